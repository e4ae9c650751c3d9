"""A body over the limit gets its 413 through Serve's proxy every time: the server reads and drops
the body (up to `max_discarded_body_bytes`) before it answers, so a client that sends its whole
body before reading (urllib, httpx) reads the 413 instead of a reset connection."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import httpx
import pytest

pytestmark = [pytest.mark.serve, pytest.mark.both_fronts]

TRIES = 20
BODY = b"text_input=" + b"x" * 10_000_000


def test_urllib_reads_the_413_every_time(serve_server):
    url = f"{serve_server.client.base_url}/api/tts-generate"
    answers = []
    for _ in range(TRIES):
        request = urllib.request.Request(url, data=BODY, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            urllib.request.urlopen(request, timeout=60)
            answers.append("no error")
        except urllib.error.HTTPError as exc:
            answers.append((exc.code, json.loads(exc.read())["detail"]))
        except OSError as exc:  # a reset connection, a broken pipe
            answers.append(repr(exc))
    assert answers == [(413, "request body larger than 1000000 bytes")] * TRIES, answers


def test_httpx_reads_the_413_every_time(serve_server):
    url = f"{serve_server.client.base_url}/api/tts-generate"
    answers = []
    for _ in range(TRIES):
        try:
            response = httpx.post(url, content=BODY, timeout=60,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
            answers.append(response.status_code)
        except httpx.TransportError as exc:
            answers.append(repr(exc))
    assert answers == [413] * TRIES, answers


def test_a_chunked_body_over_the_limit_reads_the_413(serve_server):
    def chunks():  # no Content-Length: refused as it passes the limit, the rest still read
        yield b"text_input="
        for _ in range(100):
            yield b"y" * 100_000

    for _ in range(5):
        response = httpx.post(f"{serve_server.client.base_url}/api/tts-generate", content=chunks(), timeout=60,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 413
