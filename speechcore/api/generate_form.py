"""The form of `/api/tts-generate`: its fields as sent, the parameters after defaults are merged,
AllTalk's validation of them (every failing field reported at once, one line per field, in the
contract's field order) and the SpeechOrder they make."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from pydantic import BaseModel, ConfigDict

from ..config.alltalk import ApiDefaults, RvcSettings
from ..config.engine_settings import EngineDefaults
from ..orders import Narration, Role, SpeechOrder
from ..rvc_requests import rvc_voice_off
from ..safe_paths import unsafe_reason
from ..service import SpeechService
from ..text.filtering import FILTER_MODES

LANGUAGES = (
    "auto", "ar", "zh-cn", "zh", "cs", "nl", "en", "fr", "de", "hu", "hi", "it", "ja", "ko", "pl",
    "pt", "ru", "es", "tr",
)
NARRATOR_MODES = ("true", "false", "silent")
TEXT_NOT_INSIDE_MODES = ("character", "narrator", "silent")
_FORBIDDEN_VOICE_CHARS = set('<>"|?*')
_OUTPUT_NAME = re.compile(r"[A-Za-z0-9_]+")
@dataclass(frozen=True)
class GenerateParams:
    """A complete `/api/tts-generate` request (field order = the contract's error order)."""

    text_input: str
    text_filtering: str
    character_voice_gen: str
    rvccharacter_voice_gen: str
    rvccharacter_pitch: float
    narrator_enabled: str
    narrator_voice_gen: str
    rvcnarrator_voice_gen: str
    rvcnarrator_pitch: float
    text_not_inside: str
    language: str
    output_file_name: str
    output_file_timestamp: bool
    autoplay: bool
    autoplay_volume: float
    speed: float
    pitch: float
    temperature: float
    repetition_penalty: float


def _one_of(value: str, allowed: tuple[str, ...]) -> str | None:
    if value in allowed:
        return None
    return "must be one of " + ", ".join(f"'{a}'" for a in allowed) + f" (got {value!r})"


def _voice_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if _FORBIDDEN_VOICE_CHARS & set(value):
        return 'must not contain any of the characters < > " | ? *'
    reason = unsafe_reason(value)
    return f"must name a voice inside the voice folder: it {reason}" if reason else None


def _rvc_voice_problem(value: str) -> str | None:
    if rvc_voice_off(value):
        return None
    reason = unsafe_reason(value)
    return f"must be 'Disabled' or a model inside models/rvc_voices: it {reason}" if reason else None


def _between(value: float, low: float, high: float) -> str | None:
    return None if low <= value <= high else f"must be between {low} and {high} (got {value})"


def text_length_problem(text: str, max_characters: int) -> str | None:
    if len(text) <= max_characters:
        return None
    return f"must be at most {max_characters} characters long (got {len(text)})"


def validate_generate(params: GenerateParams, max_characters: int) -> list[str]:
    """Every rule of the contract that `params` breaks, as `<field>: <rule>` lines."""
    checks: dict[str, str | None] = {
        "text_input": text_length_problem(params.text_input, max_characters),
        "text_filtering": _one_of(params.text_filtering, FILTER_MODES),
        "character_voice_gen": _voice_problem(params.character_voice_gen),
        "rvccharacter_voice_gen": _rvc_voice_problem(params.rvccharacter_voice_gen),
        "narrator_enabled": _one_of(params.narrator_enabled, NARRATOR_MODES),
        "narrator_voice_gen": _voice_problem(params.narrator_voice_gen),
        "rvcnarrator_voice_gen": _rvc_voice_problem(params.rvcnarrator_voice_gen),
        "text_not_inside": _one_of(params.text_not_inside, TEXT_NOT_INSIDE_MODES),
        "language": _one_of(params.language, LANGUAGES),
        "output_file_name": None if _OUTPUT_NAME.fullmatch(params.output_file_name)
        else "must be one or more ASCII letters, digits or underscores",
        "autoplay_volume": _between(params.autoplay_volume, 0.1, 1.0),
        "speed": _between(params.speed, 0.25, 2.0),
        "pitch": _between(params.pitch, -10, 10),
        "temperature": _between(params.temperature, 0.1, 1.0),
        "repetition_penalty": _between(params.repetition_penalty, 1.0, 20.0),
    }
    order = [f.name for f in fields(GenerateParams)]
    return [f"{name}: {checks[name]}" for name in order if checks.get(name)]


class GenerateForm(BaseModel):
    """The form fields of `/api/tts-generate` as sent: empty fields arrive as None (absent).
    Unknown fields are ignored, as AllTalk's clients expect; `engine` picks a live engine other
    than the default one."""

    model_config = ConfigDict(extra="ignore")

    text_input: str
    text_filtering: str | None = None
    character_voice_gen: str | None = None
    rvccharacter_voice_gen: str | None = None
    rvccharacter_pitch: float | None = None
    narrator_enabled: str | None = None
    narrator_voice_gen: str | None = None
    rvcnarrator_voice_gen: str | None = None
    rvcnarrator_pitch: float | None = None
    text_not_inside: str | None = None
    language: str | None = None
    output_file_name: str | None = None
    output_file_timestamp: bool | None = None
    autoplay: bool | None = None
    autoplay_volume: float | None = None
    streaming: bool | None = None
    speed: float | None = None
    pitch: float | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    engine: str | None = None


def merge_defaults(form: GenerateForm, api: ApiDefaults, rvc: RvcSettings, engine: EngineDefaults) -> GenerateParams:
    """Fills every absent field from confignew.json (`api_def`, `rvc_settings`) and the engine."""

    def pick(value, default):  # type: ignore[no-untyped-def]
        return default if value is None else value

    return GenerateParams(
        text_input=form.text_input,
        text_filtering=pick(form.text_filtering, api.api_text_filtering),
        character_voice_gen=pick(form.character_voice_gen, engine.def_character_voice),
        rvccharacter_voice_gen=pick(form.rvccharacter_voice_gen, rvc.rvc_char_model_file),
        rvccharacter_pitch=pick(form.rvccharacter_pitch, rvc.pitch),
        narrator_enabled=pick(form.narrator_enabled, api.api_narrator_enabled),
        narrator_voice_gen=pick(form.narrator_voice_gen, engine.def_narrator_voice),
        rvcnarrator_voice_gen=pick(form.rvcnarrator_voice_gen, rvc.rvc_narr_model_file),
        rvcnarrator_pitch=pick(form.rvcnarrator_pitch, rvc.pitch),
        text_not_inside=pick(form.text_not_inside, api.api_text_not_inside),
        language=pick(form.language, api.api_language),
        output_file_name=pick(form.output_file_name, api.api_output_file_name),
        output_file_timestamp=pick(form.output_file_timestamp, api.api_output_file_timestamp),
        autoplay=pick(form.autoplay, api.api_autoplay),
        autoplay_volume=pick(form.autoplay_volume, api.api_autoplay_volume),
        speed=pick(form.speed, engine.generationspeed_set),
        pitch=pick(form.pitch, engine.pitch_set),
        temperature=pick(form.temperature, engine.temperature_set),
        repetition_penalty=pick(form.repetition_penalty, engine.repetitionpenalty_set),
    )


def speech_order(params: GenerateParams, engine: str | None) -> SpeechOrder:
    """What `/api/tts-generate` asks the pipeline for (§4.3): the filtered text in the character
    voice, or narrated with the narrator voice; the request's knobs and RVC voices."""
    character = Role(params.character_voice_gen, params.rvccharacter_voice_gen, params.rvccharacter_pitch)
    narration = None
    if params.narrator_enabled != "false":
        narration = Narration(params.narrator_enabled, Role(params.narrator_voice_gen, params.rvcnarrator_voice_gen,
                                                            params.rvcnarrator_pitch), params.text_not_inside)
    return SpeechOrder(text=params.text_input, character=character, language=params.language, engine=engine,
                       filtering=params.text_filtering, narration=narration, speed=params.speed,
                       temperature=params.temperature, repetition_penalty=params.repetition_penalty,
                       pitch=params.pitch, text_field="text_input")


class GenerateInvalid(ValueError):
    """The request breaks rules of the contract (each route answers them in its own shape)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


async def decode_generate(service: SpeechService, form: GenerateForm, max_characters: int
                          ) -> tuple[GenerateParams, SpeechOrder]:
    """A `/api/tts-generate` form as the pipeline's order, with every absent field filled from the
    settings and the engine's model settings; GenerateInvalid lists everything it breaks."""
    info = await service.engines.info(form.engine)
    config = service.settings.config
    params = merge_defaults(form, config.api_def, config.rvc_settings, service.engines.model_settings(info).settings)
    if problems := validate_generate(params, max_characters):
        raise GenerateInvalid(problems)
    # The engine whose defaults were merged, even if another one is current by now.
    return params, speech_order(params, info.engine)
