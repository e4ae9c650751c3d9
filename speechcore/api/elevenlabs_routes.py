"""ElevenLabs-compatible routes (elevenlabs_wire.py): speech from a whole text, streamed or not, and
from text streamed in over a WebSocket (elevenlabs_socket.py), so that the `elevenlabs` SDK and
voice-agent frameworks built on it work with their base URL pointed here."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Query, Request, Response, WebSocket
from fastapi.responses import StreamingResponse

from ..audio.encode import encode_whole
from ..engine_client import EngineUnavailable
from ..engine_types import EngineInfo
from ..service import SpeechService
from ..streaming import encode_stream
from .contract_error import ContractError
from .deps import Pipeline, Service
from .elevenlabs_socket import CLOSE_ERROR, CLOSE_POLICY, MAX_INACTIVITY_S, TextStream, end_stream, speak_text_stream
from .elevenlabs_wire import (
    SpeechBody,
    elevenlabs_error_body,
    engine_for,
    model_list,
    output_format,
    parse_speech_body,
    speech_order,
    voice_list,
)
from .errors import error_shape, error_status
from .route_policy import policy

_LOGGER = logging.getLogger(__name__)
router = APIRouter(tags=["elevenlabs"])


def elevenlabs_shape(status: int, message: str, _error: BaseException) -> dict[str, object]:
    return elevenlabs_error_body("error" if status >= 500 else "invalid_request", message)


async def _live_infos(service: SpeechService) -> dict[str, EngineInfo]:
    """The description of every live engine that answers one (an engine without a replica is left
    out of the lists, not an error)."""
    engines = list(service.engines.live)
    found = await asyncio.gather(*(service.engines.info(engine) for engine in engines), return_exceptions=True)
    infos = {}
    for engine, info in zip(engines, found, strict=True):
        if isinstance(info, EngineUnavailable):
            _LOGGER.info("the %s engine is left out of the ElevenLabs lists: %s", engine, info)
        elif isinstance(info, BaseException):
            raise info
        else:
            infos[engine] = info
    return infos


async def _speech(service: SpeechService, voice_id: str, model_id: str | None) -> tuple[str, EngineInfo]:
    infos = await _live_infos(service)
    engine = engine_for(voice_id, model_id, service.engines.current,
                        {name: info.voices for name, info in infos.items()})
    return engine, infos[engine]


@router.get("/v1/voices")
@policy()
async def list_voices(service: Service) -> dict[str, object]:
    """Every live engine's voices; a voice's id is its name (`labels.engine` says whose)."""
    return voice_list({name: info.voices for name, info in (await _live_infos(service)).items()})


@router.get("/v1/models")
@policy()
async def list_models(service: Service) -> list[dict[str, object]]:
    """The live engines, as ElevenLabs' models: a `model_id` names the engine that speaks."""
    return model_list(list((await _live_infos(service)).values()))


def _speech_route(path: str, *, stream: bool) -> None:
    @router.post(path, response_model=None, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": SpeechBody.model_json_schema()}}}})
    @error_shape(elevenlabs_shape)
    @policy(speaks=True)
    async def speak(voice_id: str, service: Service, pipeline: Pipeline, request: Request,
                    output_format_name: str | None = Query(None, alias="output_format")) -> Response:
        body = parse_speech_body(await request.body())
        fmt = output_format(output_format_name)
        engine, info = await _speech(service, voice_id, body.model_id)
        plan = await pipeline.plan(speech_order(body.text, voice_id, engine, info, body.language_code,
                                                body.voice_settings, _filtering(service)))
        if not stream:
            chunks = await pipeline.render(plan)
            return Response(await asyncio.to_thread(encode_whole, fmt, chunks), media_type=fmt.content_type)
        first, rest = await pipeline.stream(plan)
        return StreamingResponse(encode_stream(first, rest, fmt), media_type=fmt.content_type)


_speech_route("/v1/text-to-speech/{voice_id:path}/stream", stream=True)
_speech_route("/v1/text-to-speech/{voice_id:path}", stream=False)


def _filtering(service: SpeechService) -> str:
    return service.settings.config.api_def.api_text_filtering


@router.websocket("/v1/text-to-speech/{voice_id:path}/stream-input")
@policy(speaks=True)
async def stream_input(socket: WebSocket, voice_id: str, model_id: str | None = None,
                       output_format_name: str | None = Query(None, alias="output_format"),
                       inactivity_timeout: float = Query(20.0, gt=0, le=MAX_INACTIVITY_S)) -> None:
    """Text streamed in, speech streamed out (ElevenLabs' input streaming)."""
    service: SpeechService = socket.app.state.service
    await socket.accept()
    try:
        fmt = output_format(output_format_name)
        engine, info = await _speech(service, voice_id, model_id)
    except ContractError as refused:
        detail = refused.body["detail"]
        await end_stream(socket, CLOSE_POLICY, detail["status"], detail["message"])
        return
    except Exception as exc:
        status, message = error_status(exc)
        await end_stream(socket, CLOSE_POLICY if status < 500 else CLOSE_ERROR, "error", message)
        return
    filtering = _filtering(service)
    stream = TextStream(fmt, lambda text, settings: speech_order(text, voice_id, engine, info, None, settings,
                                                                 filtering), inactivity_timeout)
    await speak_text_stream(socket, socket.app.state.pipeline, stream)
