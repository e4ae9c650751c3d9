"""ElevenLabs-compatible routes (elevenlabs_wire.py): speech from a whole text, streamed or not, and
from text streamed in over a WebSocket (elevenlabs_socket.py), so that the `elevenlabs` SDK and
voice-agent frameworks built on it work with their base URL pointed here."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Query, Request, Response, WebSocket
from fastapi.responses import StreamingResponse

from ..audio.encode import encode_whole
from ..audio.formats import AudioFormat
from ..engine_client import EngineUnavailable
from ..engine_types import EngineInfo
from ..orders import SpeechOrder
from ..pipeline import SpeechPipeline, SpeechPlan
from ..service import SpeechService
from ..streaming import encode_stream
from .deps import Pipeline, Service
from .elevenlabs_socket import TextStream, end_stream, speak_text_stream, stream_failure
from .elevenlabs_wire import (
    DEFAULT_INACTIVITY_S,
    MAX_INACTIVITY_S,
    SpeechBody,
    VoiceSettings,
    elevenlabs_error_body,
    engine_for,
    model_list,
    output_format,
    parse_speech_body,
    speech_order,
    voice_list,
)
from .errors import error_shape
from .generations import GenerationsInFlight
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


_BODY = {"requestBody": {"required": True,
                         "content": {"application/json": {"schema": SpeechBody.model_json_schema()}}}}


async def _planned(service: SpeechService, pipeline: SpeechPipeline, voice_id: str, request: Request,
                   output_format_name: str | None) -> tuple[SpeechPlan, AudioFormat]:
    body = parse_speech_body(await request.body())
    fmt = output_format(output_format_name)
    engine, info = await _speech(service, voice_id, body.model_id)
    order = speech_order(body.text, voice_id, engine, info, body.language_code, body.voice_settings,
                         _filtering(service))
    return await pipeline.plan(order), fmt


@router.post("/v1/text-to-speech/{voice_id:path}/stream", response_model=None, openapi_extra=_BODY)
@error_shape(elevenlabs_shape)
@policy(speaks=True)
async def stream_speech(voice_id: str, service: Service, pipeline: Pipeline, request: Request,
                        output_format_name: str | None = Query(None, alias="output_format")) -> StreamingResponse:
    """The speech of a whole text, streamed as it is made."""
    plan, fmt = await _planned(service, pipeline, voice_id, request, output_format_name)
    first, rest = await pipeline.stream(plan)
    return StreamingResponse(encode_stream(first, rest, fmt), media_type=fmt.content_type)


@router.post("/v1/text-to-speech/{voice_id:path}", response_model=None, openapi_extra=_BODY)
@error_shape(elevenlabs_shape)
@policy(speaks=True)
async def speech(voice_id: str, service: Service, pipeline: Pipeline, request: Request,
                 output_format_name: str | None = Query(None, alias="output_format")) -> Response:
    """The speech of a whole text, as one file."""
    plan, fmt = await _planned(service, pipeline, voice_id, request, output_format_name)
    chunks = await pipeline.render(plan)
    return Response(await asyncio.to_thread(encode_whole, fmt, chunks), media_type=fmt.content_type)


def _filtering(service: SpeechService) -> str:
    return service.settings.config.api_def.api_text_filtering


@router.websocket("/v1/text-to-speech/{voice_id:path}/stream-input")
@policy(speaks=True)
async def stream_input(socket: WebSocket, voice_id: str, model_id: str | None = None,
                       language_code: str | None = Query(None, max_length=16),
                       output_format_name: str | None = Query(None, alias="output_format"),
                       inactivity_timeout: float = Query(DEFAULT_INACTIVITY_S, gt=0, le=MAX_INACTIVITY_S)) -> None:
    """Text streamed in, speech streamed out (ElevenLabs' input streaming)."""
    service: SpeechService = socket.app.state.service
    generations: GenerationsInFlight = socket.app.state.generations
    await socket.accept()
    try:
        fmt = output_format(output_format_name)
        engine, info = await _speech(service, voice_id, model_id)
    except Exception as exc:
        await end_stream(socket, *stream_failure(exc, "error"))
        return
    filtering = _filtering(service)

    def order(text: str, settings: VoiceSettings | None, language: str | None) -> SpeechOrder:
        return speech_order(text, voice_id, engine, info, language or language_code, settings, filtering)

    stream = TextStream(fmt, order, inactivity_timeout, stopping=lambda: generations.stopping)
    await speak_text_stream(socket, socket.app.state.pipeline, stream)
