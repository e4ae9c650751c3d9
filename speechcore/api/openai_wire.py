"""The OpenAI-compatible speech endpoint's wire format (`POST /v1/audio/speech`, §6): the request,
the SpeechOrder it makes, the SSE events; its voice list and the AllTalk voice map (§3.7). Errors
are OpenAI-shaped JSON under the top-level `error` key, 400 for anything wrong in the request."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from ..audio.formats import AUDIO_FORMATS
from ..audio.pcm import PcmChunk
from ..config.alltalk import RvcSettings
from ..config.engine_settings import OPENAI_VOICE_NAMES, OpenAIVoiceMap
from ..orders import Role, SpeechOrder
from ..safe_paths import unsafe_reason
from ..wire import JsonBody
from .contract_error import ContractError

MAX_INPUT_CHARACTERS = 4096
RESPONSE_FORMATS = tuple(name for name, fmt in AUDIO_FORMATS.items() if name == fmt.name)  # aliases left out


def openai_error_body(status: int, message: str, param: str | None = None) -> dict[str, object]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def openai_error(status: int, message: str, param: str | None = None) -> ContractError:
    return ContractError(status, openai_error_body(status, message, param))


class SpeechRequest(JsonBody):
    """OpenAI's speech request. Unknown fields (e.g. `instructions`) are ignored and logged."""

    model: str = Field(description="Accepted and ignored: the server's current engine speaks.")
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARACTERS, description="The text to speak.")
    voice: str = Field(description="alloy, echo, fable, nova, onyx, shimmer (mapped per engine) or any engine voice.")
    response_format: str = Field("wav", description=f"One of {', '.join(RESPONSE_FORMATS)} (pcm: 16-bit 24 kHz).")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking speed.")
    stream_format: Literal["audio", "sse"] | None = Field(
        None, description="`audio` streams encoded audio as it is made; `sse` sends speech.audio.delta events.")

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        value = value.lower()
        if value not in RESPONSE_FORMATS:
            raise ValueError(f"must be one of {', '.join(RESPONSE_FORMATS)}")
        return value


def parse_speech_request(raw: bytes) -> SpeechRequest:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise openai_error(400, f"The request body is not valid JSON: {exc}") from exc
    try:
        return SpeechRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        messages = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise openai_error(400, messages, param) from exc


def speech_order(request: SpeechRequest, engine: str, voice_map: OpenAIVoiceMap, rvc: RvcSettings,
                 languages: bool) -> SpeechOrder:
    """§6.2: the OpenAI voice names mapped through the engine's map (any engine voice passes as
    itself), markdown and entities cleaned, language detected where the engine speaks several,
    the request's speed and the engine's other knobs, and the configured character RVC voice."""
    voice = getattr(voice_map, request.voice) if request.voice in OPENAI_VOICE_NAMES else request.voice
    return SpeechOrder(text=request.input, character=Role(voice, rvc.rvc_char_model_file, rvc.pitch),
                       language="auto" if languages else "en", engine=engine, filtering="openai", speed=request.speed,
                       text_field="input")


def voice_list(voices: list[str], voice_map: OpenAIVoiceMap) -> dict[str, object]:
    aliases = voice_map.model_dump()
    return {"voices": voices, "aliases": {name: aliases[name] for name in OPENAI_VOICE_NAMES}}


def voice_map_problem(voice_map: OpenAIVoiceMap) -> str | None:
    for name in OPENAI_VOICE_NAMES:
        if reason := unsafe_reason(getattr(voice_map, name)):
            return f"{name}: the voice {reason}"
    return None


class AudioMade:
    """Seconds of audio that passed through `count` (and `seconds` already made)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    async def count(self, chunks: AsyncIterator[PcmChunk]) -> AsyncIterator[PcmChunk]:
        async for chunk in chunks:
            self.seconds += chunk.duration_s
            yield chunk


async def sse_events(audio: AsyncIterator[bytes], characters: int, made: AudioMade) -> AsyncIterator[bytes]:
    """OpenAI's speech events. `speech.audio.done` carries `usage` as OpenAI's does; an engine
    without tokens counts the input's characters in and milliseconds of audio out."""
    async for data in audio:
        if data:
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
            yield f"data: {json.dumps(event)}\n\n".encode()
    out = round(made.seconds * 1000)
    usage = {"input_tokens": characters, "output_tokens": out, "total_tokens": characters + out}
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()
