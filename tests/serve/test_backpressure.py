"""Beyond an engine's queue limit the server answers 503 with Retry-After, every accepted request
completes, and status endpoints stay fast; switching engines under load fails no request."""

import asyncio
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from deployments.rollout import ServeRollout
from tests.support import configured_limits, decode_audio

pytestmark = pytest.mark.serve
TEXT = "A burst of requests arrives at once. Each one asks for two sentences."


@pytest.fixture
def small_queue(serve_server):
    rollout = ServeRollout()
    asyncio.run(rollout.update("piper", "tts-piper", {"max_ongoing_requests": 1, "max_queued_requests": 2}))
    yield
    asyncio.run(rollout.update("piper", "tts-piper", configured_limits("piper")))


def test_a_burst_beyond_the_queue_gets_503_with_retry_after(serve_server, small_queue):
    client = serve_server.client
    ready_ms, not_ready, done = [], [], threading.Event()

    def poll_ready():
        while not done.is_set():
            start = time.perf_counter()
            try:
                answer = client.get("/api/ready").text
            except httpx.TransportError as exc:
                answer = repr(exc)
            if answer != "Ready":
                not_ready.append(answer)
            ready_ms.append((time.perf_counter() - start) * 1000)
            time.sleep(0.05)

    poller = threading.Thread(target=poll_ready)
    poller.start()
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: client.post("/api/tts-generate", data={"text_input": TEXT}), range(12)))
    done.set()
    poller.join()
    assert not_ready == [], "/api/ready answered otherwise during the burst"
    rejected = [r for r in responses if r.status_code == 503]
    accepted = [r for r in responses if r.status_code == 200]
    assert rejected and accepted and len(rejected) + len(accepted) == 12
    assert all(
        int(r.headers.get("retry-after", 0)) > 0 and r.json()["status"] == "generate-failure" for r in rejected
    ), [(r.headers, r.text) for r in rejected]
    for response in accepted:
        assert decode_audio(client.get(response.json()["output_file_url"]).content).duration_s > 1
    print(f"\n/api/ready during the burst: median {statistics.median(ready_ms):.1f} ms, max {max(ready_ms):.1f} ms")
    assert ready_ms and statistics.median(ready_ms) < 100, ready_ms


def test_switching_engines_under_load_fails_no_request(serve_server):
    client = serve_server.client
    results, stop = [], threading.Event()

    def load():
        while not stop.is_set() and len(results) < 200:
            try:
                results.append(client.post("/api/tts-generate", data={"text_input": "Engines switch under load."}))
            except httpx.TransportError as exc:  # a dropped connection or a timeout is a failed request
                results.append(httpx.Response(599, text=repr(exc)))

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    time.sleep(1)
    switched = client.post("/api/enginereload", params={"engine": "vits"}).json()
    settings = client.get("/api/currentsettings").json()
    time.sleep(1)
    client.post("/api/enginereload", params={"engine": "piper"})
    time.sleep(0.5)
    stop.set()
    for worker in workers:
        worker.join(60)
    assert switched == {"status": "engine-success"}
    assert settings["current_engine_loaded"] == "vits"
    failed = [r for r in results if r.status_code != 200]
    # A request that arrives just after the switch asks the new engine for its default voice.
    assert failed == [], [r.text for r in failed]
