"""Every domain error the services raise, mapped to an HTTP status and message in one table; the
body's shape is the endpoint's (the contract gives each endpoint its own), declared on the route
with `@error_shape(...)`; routes that declare none answer AllTalk's `{"status": "error", ...}`.
ContractError is the exception that already carries its answer (validation lists, control answers)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..cancellation import GenerationStopped
from ..config.alltalk import ConfigFileError
from ..engine_client import EngineTimeout, EngineUnavailable
from ..engine_directory import EngineNotLive, SettingsUnreadable
from ..engine_types import EngineError, UnknownVoice, UnsupportedLanguage, VoiceFilesRefused
from ..jobs.desk import JobLimit, JobNotDone
from ..jobs.store import UnknownJob
from ..orders import NothingToSpeak, StreamingUnsupported, TextTooLong, TooManySegments
from ..pipeline import NoAudio
from ..rvc_requests import InvalidConversion, RvcModelMissing, RvcUnavailable, VoiceConversionError
from ..text.language import LanguageNotDetected
from ..voices.errors import NoSuchVoice, VoiceExists, VoiceFileTooLarge, VoiceQuotaReached, VoiceRefused
from .contract_error import ContractError
from .openai_wire import openai_error_body

_LOGGER = logging.getLogger(__name__)
Shape = Callable[[int, str, BaseException], dict[str, object]]
F = TypeVar("F", bound=Callable[..., object])

STATUSES: list[tuple[tuple[type[BaseException], ...], int, str]] = [
    # (errors, status, message: "{}" is the error's own text), first match wins
    ((GenerationStopped,), 409, "Generation was stopped by /api/stop-generation"),
    ((VoiceRefused, VoiceFilesRefused), 400, "{}"),
    ((VoiceExists,), 409, "{}"),
    ((NoSuchVoice,), 404, "{}"),
    ((VoiceFileTooLarge,), 413, "{}"),
    ((VoiceQuotaReached,), 403, "{}"),
    ((UnknownVoice, UnsupportedLanguage, LanguageNotDetected, InvalidConversion, NothingToSpeak, TextTooLong,
      StreamingUnsupported, EngineNotLive, TooManySegments, ConfigFileError), 400, "{}"),
    ((RvcModelMissing,), 404, "{}"),
    ((EngineTimeout,), 504, "{}"),
    ((EngineUnavailable, RvcUnavailable), 503, "{}"),
    ((VoiceConversionError,), 500, "RVC conversion failed: {}"),
    ((EngineError, NoAudio), 500, "TTS generation failed: {}"),
    ((SettingsUnreadable,), 500, "{}"),
    ((UnknownJob,), 404, "{}"),
    ((JobNotDone,), 409, "{}"),
    ((JobLimit,), 429, "{}"),
]
RETRY_AFTER_S = {503: "2", 429: "30"}
OPENAI_PARAMS: dict[type[BaseException], str] = {UnknownVoice: "voice", NothingToSpeak: "input", TextTooLong: "input"}


def status_shape(status: int, message: str, _error: BaseException) -> dict[str, object]:
    return {"status": "error", "message": message}


def generate_failure(status: int, message: str, error: BaseException) -> dict[str, object]:
    """`/api/tts-generate`; a request that breaks a rule before synthesis is a validation answer."""
    if isinstance(error, TooManySegments):
        return {"error": message}
    return {"status": "generate-failure", "error": message}


def invalid_value(status: int, message: str, _error: BaseException) -> dict[str, object]:
    """Previews and the streaming GET: AllTalk's prefixed `error`."""
    return {"error": {400: "Invalid value: ", 404: "File not found: "}.get(status, "") + message}


def detail(status: int, message: str, _error: BaseException) -> dict[str, object]:
    return {"detail": message}


def openai_error(status: int, message: str, error: BaseException) -> dict[str, object]:
    return openai_error_body(status, message, next((p for kind, p in OPENAI_PARAMS.items() if isinstance(error, kind)),
                                                   None))


def error_shape(shape: Shape) -> Callable[[F], F]:
    """Declares the body shape of a route's errors."""
    def declare(endpoint: F) -> F:
        endpoint.error_shape = shape  # type: ignore[attr-defined]
        return endpoint
    return declare


def _domain_status(error: BaseException) -> tuple[int, str] | None:
    for kinds, status, message in STATUSES:
        if isinstance(error, kinds):
            return status, message.format(error)
    return None


def error_status(error: BaseException) -> tuple[int, str]:
    """The status and message of a domain error (STATUSES); 500 for any other."""
    return _domain_status(error) or (500, f"Internal server error: {type(error).__name__}")


def answer(error: BaseException, shape: Shape = status_shape) -> JSONResponse:
    """The response for a domain error, in `shape`."""
    found = _domain_status(error)
    if found is None:
        raise TypeError(f"{type(error).__name__} is not a domain error") from error
    status, message = found
    headers = {"Retry-After": RETRY_AFTER_S[status]} if status in RETRY_AFTER_S else None
    return JSONResponse(shape(status, message, error), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        route = request.scope.get("route")
        return answer(exc, getattr(getattr(route, "endpoint", None), "error_shape", status_shape))

    for kinds, _status, _message in STATUSES:
        for kind in kinds:
            app.add_exception_handler(kind, domain_error)

    @app.exception_handler(ContractError)
    async def _contract_error(_request: Request, exc: ContractError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A clear JSON error instead of AllTalk's plain-text "Internal Server Error".
        _LOGGER.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse({"status": "error", "message": error_status(exc)[1]}, status_code=500)
