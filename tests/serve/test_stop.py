"""PUT /api/stop-generation stops a streaming and a standard generation running on different
engine replicas, within one sentence, and leaves no half-written file."""

import contextlib
import importlib.util
import re
import threading
import time

import httpx
import pytest

from tests.support import configured_limits, decode_audio, fixed_replicas

pytestmark = [pytest.mark.serve,
              pytest.mark.skipif(importlib.util.find_spec("TTS") is None, reason="needs the xtts engine too")]

SENTENCE = "This sentence is one of very many in a long story."
LONG = " ".join([SENTENCE] * 38)  # within the 2000-character limit of /api/tts-generate


def test_stop_reaches_a_stream_and_a_standard_generation(serve_server):
    client = serve_server.client
    serve_server.outputs.mkdir(exist_ok=True)
    before = set(serve_server.outputs.iterdir())
    one_sentence = decode_audio(client.get("/api/tts-generate-streaming", params={
        "text": SENTENCE, "voice": "en_US-joe-medium.onnx", "language": "en", "output_file": "x"}).content).duration_s

    standard = {}
    worker = threading.Thread(target=lambda: standard.update(response=client.post(
        "/api/tts-generate", data={"text_input": LONG, "engine": "xtts", "character_voice_gen": "female_01.wav"})))
    received = bytearray()
    with httpx.stream("GET", f"{client.base_url}/api/tts-generate-streaming", timeout=120, params={
            "text": LONG, "voice": "en_US-joe-medium.onnx", "language": "en", "output_file": "x"}) as stream:
        chunks = stream.iter_raw()
        received += next(chunks)
        worker.start()
        stopped = []
        deadline = time.monotonic() + 60
        while worker.is_alive() and time.monotonic() < deadline:  # until the standard request is stopped too
            time.sleep(0.5)
            message = client.put("/api/stop-generation").json()["message"]
            stopped.append(int(re.search(r"\((\d+) in progress", message).group(1)))
        for data in chunks:
            received += data
    worker.join(60)
    assert max(stopped) >= 1
    streamed = decode_audio(bytes(received)).duration_s
    assert streamed < 6 * one_sentence, f"the stream ended within a sentence or so of the stop ({streamed:.1f} s)"
    response = standard["response"]
    assert response.status_code == 409 and response.json()["status"] == "generate-failure", response.text
    assert set(serve_server.outputs.iterdir()) == before, "no file, half-written or whole, from stopped requests"


def test_a_client_that_disconnects_frees_the_engine_replica(serve_server):
    """With one Piper replica running one generation at a time, a short request sent right after a
    long stream was abandoned runs at once, instead of waiting for the abandoned stream to finish.
    (With a second replica the short request could land on the idle one and prove nothing.)"""
    import asyncio

    from deployments.rollout import ServeRollout

    client = serve_server.client
    params = {"text": LONG, "voice": "en_US-joe-medium.onnx", "language": "en", "output_file": "x"}
    rollout = ServeRollout()
    with fixed_replicas("piper", "tts-piper", 1), contextlib.ExitStack() as limits:
        asyncio.run(rollout.update("piper", "tts-piper", {"max_ongoing_requests": 1}))
        limits.callback(lambda: asyncio.run(rollout.update("piper", "tts-piper", configured_limits("piper"))))
        start = time.perf_counter()
        assert client.get("/api/tts-generate-streaming", params=params).status_code == 200
        whole_stream = time.perf_counter() - start
        with httpx.stream("GET", f"{client.base_url}/api/tts-generate-streaming", params=params, timeout=60) as r:
            next(r.iter_raw())
        # the connection is closed here, with most of the text unspoken
        start = time.perf_counter()
        assert client.post("/api/tts-generate", data={"text_input": "Short."}).status_code == 200
        short = time.perf_counter() - start
        assert short < 0.5 * whole_stream, (short, whole_stream)
