"""create_app: the FastAPI application of the AllTalk API over one SpeechService."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..errors import ContractError
from ..generation import GenerationService
from ..openai_speech import OpenAISpeechService
from ..service import SpeechService
from . import (control_routes, file_routes, generate_routes, openai_routes, page_routes, rvc_routes,
               status_routes, tools_routes)

_LOGGER = logging.getLogger(__name__)


def create_app(service: SpeechService) -> FastAPI:
    app = FastAPI(title="AllTalk-compatible TTS server on Ray Serve", version="0.1.0",
                  description="The AllTalk v2 HTTP API, served by Ray Serve deployments.")
    app.state.service = service
    app.state.generation = GenerationService(service)
    app.state.openai = OpenAISpeechService(service)
    for module in (status_routes, control_routes, generate_routes, openai_routes, tools_routes, rvc_routes,
                   file_routes, page_routes):
        app.include_router(module.router)
    _install_error_handlers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ContractError)
    async def _contract_error(_request: Request, exc: ContractError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A clear JSON error instead of AllTalk's plain-text "Internal Server Error".
        _LOGGER.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse({"status": "error", "message": f"Internal server error: {type(exc).__name__}"},
                            status_code=500)
