"""`GET /`: a short page naming the server, its engines and where the API is documented."""

from __future__ import annotations

import html

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from .deps import Service

router = APIRouter(tags=["page"])


@router.get("/", response_class=HTMLResponse)
async def index(service: Service) -> HTMLResponse:
    ready = await service.ready()
    engines = "".join(
        f"<li>{html.escape(name)}{' (default)' if name == service.current_engine else ''}</li>"
        for name in sorted(service.engines))
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AllTalk-compatible TTS server</title></head>
<body>
<h1>AllTalk-compatible TTS server</h1>
<p>Text to speech over the AllTalk v2 API, served by Ray Serve. Status: <b>{"Ready" if ready else "Unloaded"}</b>.</p>
<h2>Engines</h2><ul>{engines}</ul>
<h2>API</h2>
<ul>
<li><a href="/docs">Interactive API documentation</a> (<a href="/redoc">ReDoc</a>, <a href="/openapi.json">OpenAPI</a>)</li>
<li><a href="/api/voices">/api/voices</a>, <a href="/api/currentsettings">/api/currentsettings</a>, <a href="/api/ready">/api/ready</a></li>
</ul>
</body></html>
"""
    return HTMLResponse(body)
