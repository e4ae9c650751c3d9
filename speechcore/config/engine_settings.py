"""Per-engine settings in AllTalk's layout: `system/tts_engines/tts_engines.json` (which engine and
model are current) and `system/tts_engines/<engine>/model_settings.json` (request defaults and the
OpenAI voice map). Capability flags are not read from these files: the engine reports its own."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

OPENAI_VOICE_NAMES = ("alloy", "echo", "fable", "nova", "onyx", "shimmer")


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EngineDefaults(_Section):
    """`settings` section: defaults merged into requests that leave a field out."""

    def_character_voice: str = Field(description="Voice used when a request names none.")
    def_narrator_voice: str = Field(description="Narrator voice used when a request names none.")
    deepspeed_enabled: bool = False
    engine_installed: bool = True
    generationspeed_set: float = 1.0
    lowvram_enabled: bool = False
    repetitionpenalty_set: float = 10.0
    temperature_set: float = 0.75
    pitch_set: float = 0.0

    @field_validator("repetitionpenalty_set", mode="before")
    @classmethod
    def _comma_decimal(cls, value: object) -> object:
        # AllTalk tolerates a comma decimal separator in this one setting.
        return value.replace(",", ".") if isinstance(value, str) else value


class ModelDetails(_Section):
    manufacturer_name: str = ""
    manufacturer_website: str = ""


class OpenAIVoiceMap(_Section):
    """The six OpenAI voice names mapped to this engine's voices."""

    alloy: str
    echo: str
    fable: str
    nova: str
    onyx: str
    shimmer: str

    @classmethod
    def all_to(cls, voice: str) -> "OpenAIVoiceMap":
        return cls(**{name: voice for name in OPENAI_VOICE_NAMES})


class ModelSettings(_Section):
    """The whole `model_settings.json` of one engine."""

    model_details: ModelDetails = Field(default_factory=ModelDetails)
    settings: EngineDefaults
    openai_voices: OpenAIVoiceMap


class EngineEntry(_Section):
    name: str
    selected_model: str


class EnginesFile(_Section):
    """`tts_engines.json`: the current (default) engine and each engine's selected model."""

    engine_loaded: str = "piper"
    selected_model: str = "piper"
    engines_available: list[EngineEntry] = Field(default_factory=list)

    def selected_model_for(self, engine: str) -> str | None:
        if engine == self.engine_loaded:
            return self.selected_model
        return next((e.selected_model for e in self.engines_available if e.name == engine), None)
