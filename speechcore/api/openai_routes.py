"""OpenAI-compatible routes (§6) and the AllTalk OpenAI voice map (§3.7)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ..audio.encode import encode_whole
from ..audio.formats import AUDIO_FORMATS
from ..config.engine_settings import OpenAIVoiceMap
from ..streaming import encode_stream
from .answers import OpenAIVoices
from .contract_error import ContractError
from .deps import Pipeline, Service
from .errors import error_shape, openai_error
from .openai_wire import (
    AudioMade,
    SpeechRequest,
    parse_speech_request,
    speech_order,
    sse_events,
    voice_list,
    voice_map_problem,
)
from .route_policy import Access, policy

router = APIRouter(tags=["openai"])


@router.post("/v1/audio/speech", response_model=None, openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": SpeechRequest.model_json_schema()}}}})
@error_shape(openai_error)
@policy(speaks=True)
async def create_speech(service: Service, pipeline: Pipeline, request: Request) -> Response:
    """Audio for `input` in `response_format`. The body is parsed here (not by the framework) so
    that every malformed request is a 400 in OpenAI's error shape."""
    speech = parse_speech_request(await request.body())
    info = await service.engines.info()
    voice_map = service.engines.model_settings(info).openai_voices
    plan = await pipeline.plan(speech_order(speech, info.engine, voice_map, service.settings.config.rvc_settings,
                                            info.capabilities.languages))
    fmt = AUDIO_FORMATS[speech.response_format]
    if speech.stream_format is None:
        chunks = await pipeline.render(plan)
        return Response(await asyncio.to_thread(encode_whole, fmt, chunks), media_type=fmt.content_type)
    first, rest = await pipeline.stream(plan)
    made = AudioMade(first.duration_s)
    audio = encode_stream(first, made.count(rest), fmt)
    if speech.stream_format == "sse":
        return StreamingResponse(sse_events(audio, plan.characters, made), media_type="text/event-stream")
    return StreamingResponse(audio, media_type=fmt.content_type)


@router.get("/v1/audio/voices", response_model=OpenAIVoices)
@policy()
async def list_voices(service: Service) -> dict[str, object]:
    """The current engine's voices, and the voice each OpenAI name maps to."""
    info = await service.engines.info()
    return voice_list(info.voices, service.engines.model_settings(info).openai_voices)


@router.put("/api/openai-voicemap")
@policy(Access.ADMIN)
async def set_voice_map(service: Service, voice_map: OpenAIVoiceMap) -> dict[str, object]:
    """Persists the map in the current engine's model_settings.json."""
    if problem := voice_map_problem(voice_map):
        raise ContractError(400, {"detail": problem})
    info = await service.engines.info()
    settings = service.engines.model_settings(info).model_copy(update={"openai_voices": voice_map})
    try:
        await asyncio.to_thread(service.settings.save_model_settings, info.engine, settings)
    except OSError as exc:
        raise ContractError(500, {"detail": f"Failed to update model settings file: {exc}"}) from exc
    return {"message": "OpenAI voice mappings updated successfully"}
