"""What clients see once the server has begun to stop (GenerationsInFlight.stopping, set when the
ingress sees the drain): new generations get 503 with Retry-After, /api/ready answers `Stopping`
with 503, everything else (files, status) is still served; and generations are counted while in
flight, so the stopper knows when none is left."""

from __future__ import annotations

import time

import httpx
import pytest

from speechcore.api import create_app
from speechcore.api.generations import GenerationsInFlight
from tests.conftest import BUNDLED_VOICE, build_asgi_service
from tests.support import serve_over_http


@pytest.fixture(scope="module")
def stoppable(tmp_path_factory):
    generations = GenerationsInFlight()
    with serve_over_http(create_app(build_asgi_service(tmp_path_factory, "stopping-root"),
                                    generations=generations)) as base:
        yield base, generations


def test_a_generation_is_counted_while_in_flight(stoppable):
    base, generations = stoppable
    seen = []
    text = " ".join(["A sentence to keep the stream busy for a moment."] * 35)
    with httpx.stream("GET", f"{base}/api/tts-generate-streaming", timeout=60, params={
            "text": text, "voice": BUNDLED_VOICE, "language": "en", "output_file": "x"}) as stream:
        audio = stream.iter_raw()  # kept: a dropped iterator closes the stream
        next(audio)
        seen.append(generations.total)
    assert seen == [1]
    deadline = time.monotonic() + 20  # the client went away: the generation ends after its sentence
    while generations.total and time.monotonic() < deadline:
        time.sleep(0.1)
    assert generations.total == 0


def test_a_stopping_server_refuses_new_generations_and_still_serves_the_rest(stoppable):
    base, generations = stoppable
    made = httpx.post(f"{base}/api/tts-generate", timeout=60, data={"text_input": "Made before the stop."})
    assert made.status_code == 200
    generations.stopping = True
    try:
        assert httpx.get(f"{base}/api/ready").status_code == 503
        assert httpx.get(f"{base}/api/ready").text == "Stopping"
        for method, path, kwargs in (("POST", "/api/tts-generate", {"data": {"text_input": "Too late."}}),
                                     ("GET", "/api/tts-generate-streaming", {"params": {
                                         "text": "Too late.", "voice": BUNDLED_VOICE, "language": "en",
                                         "output_file": "x"}}),
                                     ("POST", "/v1/audio/speech", {"json": {
                                         "model": "tts-1", "input": "Too late.", "voice": "alloy"}})):
            refused = httpx.request(method, f"{base}{path}", **kwargs)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5", path
            assert "stopping" in refused.json()["detail"]
        assert httpx.get(f"{base}{made.json()['output_file_url']}").status_code == 200
        assert httpx.get(f"{base}/api/voices").status_code == 200
    finally:
        generations.stopping = False
