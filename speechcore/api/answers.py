"""The JSON answers of the API as models, so that /openapi.json describes responses as well as
requests. Field order is the wire order."""

from __future__ import annotations

from pydantic import BaseModel


class GenerateAnswer(BaseModel):
    status: str = "generate-success"
    output_file_path: str
    output_file_url: str
    output_cache_url: str


class PreviewAnswer(BaseModel):
    status: str = "generate-success"
    output_file_path: str
    output_file_url: str


class NamedFileAnswer(BaseModel):
    """POST /api/tts-generate-streaming: the name as sent."""

    output_file_path: str


class StatusAnswer(BaseModel):
    """AllTalk's control and status answers: a status word, and a message where there is one."""

    status: str
    message: str | None = None


class VoicesAnswer(BaseModel):
    status: str
    voices: list[str] | None = None
    message: str | None = None


class RvcVoicesAnswer(BaseModel):
    status: str = "success"
    voices: list[str]
    rvcvoices: list[str]


class CurrentSettings(BaseModel):
    engines_available: list[str]
    current_engine_loaded: str
    models_available: list[dict[str, str]]
    current_model_loaded: str | None
    manufacturer_name: str
    audio_format: str
    deepspeed_capable: bool
    deepspeed_available: bool
    deepspeed_enabled: bool
    generationspeed_capable: bool
    generationspeed_set: float
    lowvram_capable: bool
    lowvram_enabled: bool
    pitch_capable: bool
    pitch_set: float
    repetitionpenalty_capable: bool
    repetitionpenalty_set: float
    streaming_capable: bool
    temperature_capable: bool
    temperature_set: float
    ttsengines_installed: bool
    languages_capable: bool
    multivoice_capable: bool
    multimodel_capable: bool


class OpenAIVoices(BaseModel):
    voices: list[str]
    aliases: dict[str, str]
