"""The generated-file response: a file of one piece goes as one body message (behind Serve, each
message is a hop from the ingress to the HTTP front), read in one worker thread."""

from __future__ import annotations

import asyncio
import os

import anyio

from speechcore.api.file_routes import AudioFileResponse


def _sent(path, size_limit: int | None = None) -> list[dict]:
    messages: list[dict] = []

    async def send(message: dict) -> None:
        messages.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    response = AudioFileResponse(path, media_type="audio/wav", stat_result=os.stat(path))
    if size_limit is not None:
        response.chunk_size = size_limit
    scope = {"type": "http", "method": "GET", "headers": [], "asgi": {"spec_version": "2.4"}}
    asyncio.run(response(scope, receive, send))
    return messages


def test_a_file_of_one_piece_goes_as_one_message_with_its_length(tmp_path, monkeypatch):
    async def opened_in_three_hops(*_args, **_kwargs):
        raise AssertionError("read with Starlette's open, read, close (three worker threads)")

    monkeypatch.setattr(anyio, "open_file", opened_in_three_hops)
    path = tmp_path / "speech.wav"
    path.write_bytes(os.urandom(300_000))
    start, *bodies = _sent(path)
    assert start["status"] == 200 and (b"content-length", b"300000") in start["headers"]
    assert [body["body"] for body in bodies] == [path.read_bytes()] and not bodies[0]["more_body"]


def test_a_larger_file_goes_in_pieces(tmp_path):
    path = tmp_path / "long.wav"
    path.write_bytes(os.urandom(300_000))
    _start, *bodies = _sent(path, size_limit=100_000)
    assert len(bodies) >= 3 and b"".join(body["body"] for body in bodies) == path.read_bytes()
