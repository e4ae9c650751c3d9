"""The OpenAI-compatible speech endpoint (`POST /v1/audio/speech`, §6), its voice list and the
AllTalk voice map (`PUT /api/openai-voicemap`, §3.7). Errors are OpenAI-shaped JSON under the
top-level `error` key, with 400 for anything wrong in the request (checked before synthesis)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .audio.encode import encode_whole
from .audio.formats import AUDIO_FORMATS
from .audio.pcm import PcmChunk
from .config.engine_settings import OPENAI_VOICE_NAMES, OpenAIVoiceMap
from .engine_types import EngineInfo, SynthesisRequest
from .errors import ContractError
from .generation import engine_errors
from .safe_paths import unsafe_reason
from .service import SpeechService
from .streaming import encode_stream, start_stream
from .text.filtering import has_speech, html_prefilter

MAX_INPUT_CHARACTERS = 4096
RESPONSE_FORMATS = ("wav", "mp3", "opus", "aac", "flac", "pcm", "ogg", "m4a")


def openai_error(status: int, message: str, param: str | None = None) -> ContractError:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return ContractError(status, {"error": {"message": message, "type": kind, "param": param, "code": None}})


class SpeechRequest(BaseModel):
    """OpenAI's speech request. Unknown fields (e.g. `instructions`) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="Accepted and ignored: the server's current engine speaks.")
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARACTERS, description="The text to speak.")
    voice: str = Field(description="alloy, echo, fable, nova, onyx, shimmer (mapped per engine) or any engine voice.")
    response_format: str = Field("wav", description="wav, mp3, opus, aac, flac, pcm (16-bit 24 kHz), ogg or m4a.")
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


@dataclass
class SpeechResponse:
    """Either a complete body or a stream of bytes, with its content type."""

    content_type: str
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None


class OpenAISpeechService:
    def __init__(self, hub: SpeechService):
        self.hub = hub

    def _voice(self, info: EngineInfo, voice: str) -> str:
        if voice in OPENAI_VOICE_NAMES:
            voice = getattr(self.hub.model_settings(info).openai_voices, voice)
        if unsafe_reason(voice) or voice not in info.voices:
            raise openai_error(400, f"Voice {voice!r} is not one of {', '.join(OPENAI_VOICE_NAMES)} and not a voice "
                                    f"of the {info.engine} engine (see /v1/audio/voices)", "voice")
        return voice

    async def speech(self, request: SpeechRequest) -> SpeechResponse:
        info = await self.hub.info()
        voice = self._voice(info, request.voice)
        text = html_prefilter(request.input)
        if not has_speech(text):
            raise openai_error(400, "input has nothing to speak", "input")
        defaults = self.hub.model_settings(info).settings
        with engine_errors(openai_error):
            language = (await asyncio.to_thread(self.hub.detector.detect, text)) if info.capabilities.languages else "en"
        synthesis = SynthesisRequest(text=text, voice=voice, language=language, speed=request.speed,
                                     temperature=defaults.temperature_set,
                                     repetition_penalty=defaults.repetitionpenalty_set, pitch=defaults.pitch_set)
        fmt = AUDIO_FORMATS[request.response_format]
        rvc = self.hub.settings.config.rvc_settings
        with engine_errors(openai_error):  # the configured character RVC voice, if any (§6.2)
            client = self.hub.source(info.engine, self.hub.conversion(rvc.rvc_char_model_file, rvc.pitch))
        if request.stream_format is None:
            with engine_errors(openai_error):
                chunks = await self.hub.runner.collect(client, synthesis, info.engine)
            if not chunks:
                raise openai_error(500, "the engine produced no audio")
            return SpeechResponse(fmt.content_type, body=await asyncio.to_thread(encode_whole, fmt, chunks))
        made = _AudioMade()
        with engine_errors(openai_error):
            first, rest = await start_stream(made.count(self.hub.runner.stream(client, synthesis, info.engine)))
        audio = encode_stream(first, rest, fmt)
        if request.stream_format == "sse":
            return SpeechResponse("text/event-stream", stream=_sse(audio, len(text), made))
        return SpeechResponse(fmt.content_type, stream=audio)

    async def voices(self) -> dict[str, object]:
        info = await self.hub.info()
        aliases = self.hub.model_settings(info).openai_voices.model_dump()
        return {"voices": info.voices, "aliases": {name: aliases[name] for name in OPENAI_VOICE_NAMES}}

    async def set_voice_map(self, voice_map: OpenAIVoiceMap) -> dict[str, object]:
        """Persists the map in the current engine's model_settings.json."""
        for name in OPENAI_VOICE_NAMES:
            if reason := unsafe_reason(getattr(voice_map, name)):
                raise ContractError(400, {"detail": f"{name}: the voice {reason}"})
        info = await self.hub.info()
        settings = self.hub.model_settings(info).model_copy(update={"openai_voices": voice_map})
        try:
            await asyncio.to_thread(self.hub.settings.save_model_settings, info.engine, settings)
        except OSError as exc:
            raise ContractError(500, {"detail": f"Failed to update model settings file: {exc}"}) from exc
        return {"message": "OpenAI voice mappings updated successfully"}


class _AudioMade:
    """Seconds of audio that passed through `count`."""

    def __init__(self) -> None:
        self.seconds = 0.0

    async def count(self, chunks: AsyncIterator[PcmChunk]) -> AsyncIterator[PcmChunk]:
        async for chunk in chunks:
            self.seconds += chunk.duration_s
            yield chunk


async def _sse(audio: AsyncIterator[bytes], characters: int, made: _AudioMade) -> AsyncIterator[bytes]:
    """OpenAI's speech events. `speech.audio.done` carries `usage` as OpenAI's does; an engine
    without tokens counts the input's characters in and milliseconds of audio out."""
    async for data in audio:
        if data:
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
            yield f"data: {json.dumps(event)}\n\n".encode()
    out = round(made.seconds * 1000)
    usage = {"input_tokens": characters, "output_tokens": out, "total_tokens": characters + out}
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()
