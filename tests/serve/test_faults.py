"""Faults on real Serve: an engine replica killed under load costs the clients nothing (the ingress
retries a non-streamed generation once, on another replica) and Serve brings the replica count
back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import ray

from deployments.serve_control import serve_details
from tests.support import decode_audio, fixed_replicas

pytestmark = pytest.mark.serve
TEXT = "A replica may die at any moment. The client should never notice it."


def _replicas() -> list[dict]:
    details = serve_details()
    return details["applications"]["piper"]["deployments"]["tts-piper"]["replicas"]


def _running() -> list[dict]:
    return [r for r in _replicas() if r["state"] == "RUNNING"]


def _wait_until_healthy(timeout_s: float = 120) -> None:
    """Until Piper is HEALTHY with every replica running: a test leaves the shared server as it found it."""
    deadline = time.monotonic() + timeout_s
    while True:
        details = serve_details()
        deployment = details["applications"]["piper"]["deployments"]["tts-piper"]
        states = {r["state"] for r in deployment["replicas"]}
        if str(deployment["status"]).endswith("HEALTHY") and states == {"RUNNING"} \
                and not str(deployment["status"]).endswith("UNHEALTHY"):
            return
        assert time.monotonic() < deadline, f"Piper did not settle: {deployment['status']} {states}"
        time.sleep(0.5)


@pytest.fixture
def two_piper_replicas(serve_server):
    with fixed_replicas("piper", "tts-piper", 2):
        yield


def test_an_engine_replica_killed_under_load_fails_no_request(serve_server, two_piper_replicas):
    client = serve_server.client
    statuses, done = [], threading.Event()
    completed = threading.Semaphore(0)

    def one(_):
        answer = client.post("/v1/audio/speech", json={"model": "tts-1", "input": TEXT, "voice": "alloy",
                                                         "response_format": "wav"}, timeout=120)
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            assert decode_audio(answer.content).duration_s > 1.0
        completed.release()
        return answer.status_code

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(24)]
        for _ in range(4):  # the load is under way
            completed.acquire(timeout=120)
        victim = _running()[0]
        ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
        results = [f.result() for f in futures]
    done.set()

    assert results == [200] * 24, f"client-visible failures: {[s for s in results if s != 200]}"
    deadline = time.monotonic() + 90
    while len(_running()) < 2 or victim["replica_id"] in {r["replica_id"] for r in _running()}:
        assert time.monotonic() < deadline, f"Serve did not replace the killed replica: {_replicas()}"
        time.sleep(0.5)
    _wait_until_healthy()


def test_a_stream_that_loses_its_replica_ends_early_and_cleanly(serve_server):
    """A stream has already sent audio when its engine replica dies: it cannot be retried, so it
    ends there, as a complete response (the chunked body is closed properly and decodes), and
    Serve replaces the replica."""
    client = serve_server.client
    long_text = " ".join([TEXT] * 25)
    received = bytearray()
    with client.stream("GET", "/api/tts-generate-streaming", params={
            "text": long_text, "voice": "en_US-joe-medium.onnx", "language": "en", "output_file": "x"}) as stream:
        assert stream.status_code == 200
        chunks = stream.iter_raw()
        received += next(chunks)
        victims = _running()  # every replica (autoscaling may have left two): the stream's is among them
        for victim in victims:
            ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
        for data in chunks:  # raises if the connection breaks instead of ending
            received += data
    heard = decode_audio(bytes(received)).duration_s
    whole = 25 * decode_audio(client.get("/api/tts-generate-streaming", params={
        "text": TEXT, "voice": "en_US-joe-medium.onnx", "language": "en", "output_file": "x"}).content).duration_s
    assert 0 < heard < 0.9 * whole
    deadline = time.monotonic() + 90
    while not _running() or {v["replica_id"] for v in victims} & {r["replica_id"] for r in _running()}:
        assert time.monotonic() < deadline, f"Serve did not replace the killed replicas: {_replicas()}"
        time.sleep(0.5)
    _wait_until_healthy()
