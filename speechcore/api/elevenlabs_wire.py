"""ElevenLabs' text-to-speech API as this server speaks it (`/v1/text-to-speech/...`, `/v1/voices`,
`/v1/models`): the request bodies and WebSocket messages, the output formats, and how a voice id and
a model id name this server's voices and engines. A voice id is a voice's own name; a model id is an
engine's name, and ElevenLabs' own model ids (`eleven_...`, which clients send by default) stand for
the engine that has the voice. Errors are ElevenLabs-shaped: `{"detail": {"status", "message"}}`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..audio.formats import AudioFormat
from ..engine_types import EngineInfo
from ..orders import Role, SpeechOrder
from ..wire import JsonBody
from .contract_error import ContractError
from .generate_form import LANGUAGES

MAX_TEXT_CHARACTERS = 5000
"""The longest text of one request, or of one message of a text stream."""
MAX_MESSAGE_BYTES = 64 * 1024
"""The longest message of a text stream, refused before it is parsed (its text at most
MAX_TEXT_CHARACTERS, each escaped in JSON as up to 6)."""
MAX_SENTENCE_CHARACTERS = 300
"""A text stream's run of text with no end mark is spoken at a space once it is this long."""
MAX_QUEUED_SENTENCES = 32
"""Sentences of a text stream waiting to be spoken; a client that sends faster waits for room."""
DEFAULT_INACTIVITY_S, MAX_INACTIVITY_S = 20.0, 180.0
"""ElevenLabs' `inactivity_timeout`: how long a text stream waits for text (once all it had is spoken)."""
DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"
OUTPUT_FORMATS: dict[str, AudioFormat] = {
    **{f"pcm_{rate}": AudioFormat(f"pcm_{rate}", "s16le", "pcm_s16le", "pcm", f"audio/L16; rate={rate}; channels=1",
                                  rate=rate) for rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000)},
    **{f"mp3_{rate}_{kbps}": AudioFormat(f"mp3_{rate}_{kbps}", "mp3", "libmp3lame", "mp3", "audio/mpeg", rate=rate,
                                         bit_rate=kbps * 1000) for rate, kbps in ((22050, 32), (44100, 128))},
    "ulaw_8000": AudioFormat("ulaw_8000", "mulaw", "pcm_mulaw", "ulaw", "audio/basic", rate=8000),
}
UNSUPPORTED_SUFFIXES = ("/with-timestamps", "/stream/with-timestamps")
"""ElevenLabs' routes with character timings, which no engine here gives (not a voice's name)."""
ELEVENLABS_MODEL_PREFIX = "eleven_"
SPOKEN_LANGUAGES = tuple(code for code in LANGUAGES if code != "auto")


def elevenlabs_error_body(status: str, message: str) -> dict[str, object]:
    """ElevenLabs' error shape: `status` a machine-readable kind, `message` for people."""
    return {"detail": {"status": status, "message": message}}


def elevenlabs_error(code: int, status: str, message: str) -> ContractError:
    return ContractError(code, elevenlabs_error_body(status, message))


class VoiceSettings(BaseModel):
    """ElevenLabs' voice settings: `speed` is honoured; stability, similarity and style have no
    counterpart in these engines and are accepted as given."""

    model_config = ConfigDict(extra="ignore")
    speed: float | None = Field(None, ge=0.25, le=4.0)


class SpeechBody(JsonBody):
    """`POST /v1/text-to-speech/{voice_id}[/stream]`."""

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARACTERS)
    model_id: str | None = None
    language_code: str | None = Field(None, max_length=16)
    voice_settings: VoiceSettings | None = None


class StreamMessage(JsonBody):
    """One message of a text stream: text to add (the first message's is a space and carries the
    settings; an empty text ends the stream), or `flush: true` to speak what is buffered."""

    text: str | None = Field(None, max_length=MAX_TEXT_CHARACTERS)
    flush: bool = False
    voice_settings: VoiceSettings | None = None
    try_trigger_generation: bool | None = Field(None, description="Accepted: sentences decide when speech starts.")
    generation_config: dict[str, Any] | None = Field(None, description="Accepted: sentences decide the chunks.")
    xi_api_key: str | None = Field(None, description="Accepted: the key is checked at the handshake.")


def parse_speech_body(raw: bytes) -> SpeechBody:
    try:
        return SpeechBody.model_validate(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise elevenlabs_error(400, "invalid_json", f"The request body is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        raise elevenlabs_error(400, "invalid_request", _messages(exc)) from exc


class BadMessage(ValueError):
    """A message of a text stream that is not one (not JSON, or not the message's shape)."""


def parse_stream_message(raw: str) -> StreamMessage:
    try:
        return StreamMessage.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise BadMessage(f"a message must be JSON: {exc}") from exc
    except ValidationError as exc:
        raise BadMessage(_messages(exc)) from exc


def _messages(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())


def output_format(name: str | None) -> AudioFormat:
    """The format an `output_format` names (the default: mp3 at 44.1 kHz)."""
    fmt = OUTPUT_FORMATS.get(name or DEFAULT_OUTPUT_FORMAT)
    if fmt is None:
        raise elevenlabs_error(400, "invalid_output_format",
                               f"output_format must be one of {', '.join(OUTPUT_FORMATS)}; got {name!r}")
    return fmt


def engine_for(voice_id: str, model_id: str | None, current: str, voices_by_engine: Mapping[str, list[str]]) -> str:
    """The engine that speaks: the one `model_id` names, else the current engine when it has the
    voice, else the first live engine that has it."""
    if voice_id.endswith(UNSUPPORTED_SUFFIXES):
        raise elevenlabs_error(400, "unsupported", "timestamps are not available: no engine of this server gives "
                               "character timings")
    if model_id and not model_id.startswith(ELEVENLABS_MODEL_PREFIX):
        if model_id not in voices_by_engine:
            raise elevenlabs_error(400, "model_not_found", f"model_id {model_id!r} is not an engine of this server; "
                                   f"models: {', '.join(voices_by_engine)} (GET /v1/models)")
        engines = [model_id]
    else:
        engines = [current, *(name for name in voices_by_engine if name != current)]
    for engine in engines:
        if voice_id in voices_by_engine.get(engine, []):
            return engine
    where = f"the {engines[0]} engine" if len(engines) == 1 else "any engine of this server"
    raise elevenlabs_error(404, "voice_not_found", f"A voice with the voice_id {voice_id!r} was not found in {where} "
                           "(GET /v1/voices)")


def speech_order(text: str, voice_id: str, engine: str, info: EngineInfo, language_code: str | None,
                 settings: VoiceSettings | None, filtering: str) -> SpeechOrder:
    """The order for `text`: in `language_code`, else detected where the engine speaks several."""
    language = language_code or ("auto" if info.capabilities.languages else "en")
    return SpeechOrder(text=text, character=Role(voice_id), language=language, engine=engine, filtering=filtering,
                       speed=settings.speed if settings else None)


def voice_list(voices_by_engine: Mapping[str, list[str]]) -> dict[str, object]:
    """`GET /v1/voices`: a voice's id is its name; `labels.engine` says whose it is."""
    return {"voices": [{"voice_id": voice, "name": voice, "category": "premade", "labels": {"engine": engine},
                        "description": f"{voice} ({engine})"}
                       for engine, voices in voices_by_engine.items() for voice in voices]}


def model_list(infos: list[EngineInfo]) -> list[dict[str, object]]:
    """The engines as ElevenLabs' models; `languages`: what `language_code` may ask for (English
    alone for an engine that speaks one language)."""
    return [{"model_id": info.engine, "name": info.manufacturer_name, "can_do_text_to_speech": True,
             "can_use_speaker_boost": False, "description": f"{info.engine}: {info.current_model}",
             "languages": [{"language_id": code, "name": code}
                           for code in (SPOKEN_LANGUAGES if info.capabilities.languages else ("en",))]}
            for info in infos]
