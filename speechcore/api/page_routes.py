"""`GET /`: a small page to try the server: pick engine, voice and language, generate (whole file
or streamed) and play. It is static (no server data in it), calls only the public API from the
browser and needs no library; with API keys on it asks for a key and keeps it in the browser."""

from __future__ import annotations

import json
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from .generate_form import LANGUAGES
from .route_policy import Access, policy

router = APIRouter(tags=["page"])
PAGE = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8").replace(
    "__LANGUAGES__", json.dumps([code for code in LANGUAGES if code != "zh"]))


@router.get("/", response_class=HTMLResponse)
@policy(Access.PUBLIC)
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})
