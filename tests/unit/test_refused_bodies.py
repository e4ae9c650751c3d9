"""What AccessControl reads of a body it refuses: all of it up to `max_discarded_body_bytes` (so
the client reads the answer, not a reset), nothing of a body declared larger than that, and no
more than that of a chunked one."""

from __future__ import annotations

import asyncio

from starlette.routing import Route

from speechcore.api.access import AccessControl
from speechcore.api.generations import GenerationsInFlight
from speechcore.api.route_policy import RoutePolicy, RouteTable
from speechcore.config.access import AccessArgs

CHUNK = 100_000


def _refuse(args: AccessArgs, chunks: int, declared: bool, keys: frozenset[str] = frozenset()) -> tuple[int, int]:
    """Sends a POST of `chunks` chunks; returns (status answered, bytes the middleware read)."""
    read = 0
    sent = iter(range(chunks))

    async def receive():
        nonlocal read
        index = next(sent, None)
        if index is None:
            return {"type": "http.disconnect"}
        read += CHUNK
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": index < chunks - 1}

    answered = []

    async def send(message):
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    async def app(scope, receive, send):  # the routes: read the body, as a form parser would
        while (await receive()).get("more_body"):
            pass

    headers = [(b"content-length", str(chunks * CHUNK).encode())] if declared else []
    scope = {"type": "http", "method": "POST", "path": "/api/tts-generate", "headers": headers,
             "query_string": b"", "client": ("127.0.0.1", 1)}
    generate = Route("/api/tts-generate", app, methods=["POST"])
    middleware = AccessControl(app, args, keys, frozenset(), GenerationsInFlight(),
                               RouteTable([(generate, RoutePolicy(speaks=True))]))
    try:
        asyncio.run(middleware(scope, receive, send))
    except Exception as exc:  # the app's framework turns BodyTooLarge into the 413
        answered.append(getattr(exc, "status_code", 500))
    return answered[0], read


def test_a_declared_body_over_the_limit_is_read_to_its_end_then_refused():
    args = AccessArgs(max_body_bytes=1_000_000, max_discarded_body_bytes=5_000_000)
    assert _refuse(args, chunks=30, declared=True) == (413, 3_000_000)


def test_a_declared_body_over_the_discard_limit_is_not_read():
    args = AccessArgs(max_body_bytes=1_000_000, max_discarded_body_bytes=2_000_000)
    assert _refuse(args, chunks=30, declared=True) == (413, 0)


def test_a_chunked_body_is_read_no_further_than_the_discard_limit():
    args = AccessArgs(max_body_bytes=1_000_000, max_discarded_body_bytes=2_000_000)
    status, read = _refuse(args, chunks=300, declared=False)
    assert status == 413 and read <= 2_000_000 + CHUNK


def test_a_request_refused_for_its_key_has_its_body_read_too():
    args = AccessArgs(max_discarded_body_bytes=5_000_000)
    assert _refuse(args, chunks=3, declared=True, keys=frozenset({"k"})) == (401, 300_000)
