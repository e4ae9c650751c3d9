"""RequestLog: one structured log line and one metrics report per HTTP request or WebSocket session,
with the request id.

A pure ASGI middleware (streams pass through unbuffered). The id is the request's `x-request-id`:
behind Serve the proxy sets it (the client's own, or a new one) and echoes it in the response; an
app served without Serve makes one here and echoes it itself. The line is a JSON object (engine,
voices, characters, audio seconds, latency, time to first audio); the text spoken is added only
when the logger is at DEBUG."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..telemetry import CURRENT_REQUEST, RequestRecord, Telemetry
from .access import route_path

REQUEST_ID_HEADER = "x-request-id"
WEBSOCKET_STATUS = {"websocket.accept": 101, "websocket.http.response.start": 0, "websocket.close": 403}
"""A WebSocket's status as its line says it: accepted, refused with an HTTP answer (its status), or
closed before it was accepted."""
MAX_LOGGED_TEXT = 2000


class RequestLog:
    """`templates`: the app's path templates (`/audio/{filename}`), to name the endpoint of a request
    refused before routing (401, 413, 429)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry, logger: logging.Logger, templates: Iterable[str] = ()):
        self.app = app
        self.telemetry = telemetry
        self.logger = logger
        self.templates = [(_template_pattern(t), t) for t in templates]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = Headers(scope=scope).get(REQUEST_ID_HEADER)
        echo = request_id is None and scope["type"] == "http"  # behind Serve the proxy echoes it
        record = RequestRecord(request_id=request_id or uuid.uuid4().hex, method=scope.get("method", "WEBSOCKET"),
                               path=scope["path"])
        audio_body = False

        async def send_with_record(message: Message) -> None:
            nonlocal audio_body
            if message["type"] in WEBSOCKET_STATUS:  # a socket's line: its session, 101 once accepted
                record.status = record.status or message.get("status") or WEBSOCKET_STATUS[message["type"]]
            elif message["type"] == "http.response.start":
                record.status = message["status"]
                headers = MutableHeaders(scope=message)
                audio_body = headers.get("content-type", "").startswith(("audio/", "text/event-stream"))
                if echo:
                    headers.append(REQUEST_ID_HEADER, record.request_id)
            elif message["type"] == "http.response.body" and audio_body and record.first_audio_s is None \
                    and message.get("body"):
                record.first_audio_s = record.elapsed()
            await send(message)

        token = CURRENT_REQUEST.set(record)
        try:
            await self.app(scope, receive, send_with_record)
        except BaseException as exc:
            record.outcome = "disconnected" if isinstance(exc, (OSError, asyncio.CancelledError)) else "error"
            record.status = record.status or 500
            raise
        finally:
            CURRENT_REQUEST.reset(token)
            record.latency_s = record.elapsed()
            record.endpoint = self._endpoint(scope)
            self._report(record)

    def _endpoint(self, scope: Scope) -> str:
        if route := scope.get("route"):
            return getattr(route, "path", "unmatched")
        return next((template for pattern, template in self.templates if pattern.match(route_path(scope))),
                    "unmatched")

    def _report(self, record: RequestRecord) -> None:
        try:
            self.telemetry.request_finished(record)
        except Exception:  # metrics must never fail a request
            self.logger.exception("metrics report failed")
        self.logger.info("request %s", json.dumps(self._fields(record), separators=(",", ":")))

    def _fields(self, record: RequestRecord) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "request_id": record.request_id, "method": record.method, "path": record.path,
            "endpoint": record.endpoint, "status": record.status, "outcome": record.outcome,
            "latency_ms": round(record.latency_s * 1000, 1)}
        if record.engine:
            fields.update(engine=record.engine, voices=record.voices, languages=record.languages,
                          characters=record.characters, audio_s=round(record.audio_s, 3))
        if record.first_audio_s is not None:
            fields["first_audio_ms"] = round(record.first_audio_s * 1000, 1)
        if record.texts and self.logger.isEnabledFor(logging.DEBUG):
            fields["text"] = " | ".join(record.texts)[:MAX_LOGGED_TEXT]
        return fields


def _template_pattern(template: str) -> re.Pattern[str]:
    """`/audio/{filename}` -> a pattern matching `/audio/<one path segment>`."""
    parts = re.split(r"(\{[^/{}]+\})", template)
    return re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts) + "$")

