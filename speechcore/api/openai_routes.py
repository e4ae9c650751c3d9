"""OpenAI-compatible routes (§6) and the AllTalk OpenAI voice map (§3.7)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ..config.engine_settings import OpenAIVoiceMap
from ..openai_speech import SpeechRequest, parse_speech_request
from .deps import OpenAI

router = APIRouter(tags=["openai"])


@router.post("/v1/audio/speech", response_model=None, openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": SpeechRequest.model_json_schema()}}}})
async def create_speech(openai: OpenAI, request: Request) -> Response:
    """Audio for `input` in `response_format`. The body is parsed here (not by the framework) so
    that every malformed request is a 400 in OpenAI's error shape."""
    speech = await openai.speech(parse_speech_request(await request.body()))
    if speech.stream is not None:
        return StreamingResponse(speech.stream, media_type=speech.content_type)
    return Response(speech.body, media_type=speech.content_type)


@router.get("/v1/audio/voices")
async def list_voices(openai: OpenAI) -> dict[str, object]:
    """The current engine's voices, and the voice each OpenAI name maps to."""
    return await openai.voices()


@router.put("/api/openai-voicemap")
async def set_voice_map(openai: OpenAI, voice_map: OpenAIVoiceMap) -> dict[str, object]:
    return await openai.set_voice_map(voice_map)
