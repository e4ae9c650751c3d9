"""`confignew.json`: AllTalk's global settings, typed. Unknown keys are kept on round trips but
never used; missing keys take AllTalk's shipped defaults."""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# AllTalk's default allowed-character filter: a negated class, so matching characters are deleted.
DEFAULT_ALLOWED_FILTER = (
    r"[^a-zA-Z0-9\s.,;:!?\-\'\"$\u00C0-\u017F\u0400-\u04FF\u0900-\u097F"
    r"\u2018\u2019\u201C\u201D\u3001\u3002\u3040-\u309F\u30A0-\u30FF\u4E00-\u9FFF\u3400-\u4DBF"
    r"\uF900-\uFAFF\u0600-\u06FF\u0750-\u077F\uFB50-\uFDFF\uFE70-\uFEFF\uAC00-\uD7A3"
    r"\u1100-\u11FF\u3130-\u318F\uFF01\uFF0c\uFF1A\uFF1B\uFF1F]"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ApiDefaults(_Section):
    """`api_def`: defaults for `/api/tts-generate` and the listening port."""

    api_port_number: int = Field(7851, ge=1, le=65535, description="Listen port.")
    api_allowed_filter: str = Field(
        DEFAULT_ALLOWED_FILTER, description="Characters the standard/html filters delete (regex)."
    )
    api_length_stripping: int = Field(3, ge=0, description="Narrator segments this short or shorter are dropped.")
    api_max_characters: int = Field(2000, ge=1, description="Maximum length of text_input.")
    api_use_legacy_api: bool = Field(False, description="Absolute URLs in generation responses.")
    api_legacy_ip_address: str = Field("127.0.0.1", description="Host used in absolute (legacy) URLs.")
    api_text_filtering: str = Field("standard", description="Default text_filtering.")
    api_narrator_enabled: str = Field("false", description="Default narrator_enabled.")
    api_text_not_inside: str = Field("character", description="Default text_not_inside.")
    api_language: str = Field("en", description="Default language.")
    api_output_file_name: str = Field("myoutputfile", description="Default output_file_name.")
    api_output_file_timestamp: bool = Field(True, description="Default output_file_timestamp.")
    api_autoplay: bool = Field(False, description="Default autoplay.")
    api_autoplay_volume: float = Field(0.5, description="Default autoplay_volume.")

    @field_validator("api_allowed_filter")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @cached_property
    def allowed_filter(self) -> re.Pattern[str]:
        """The compiled filter (compiled once per loaded config, not per request)."""
        return re.compile(self.api_allowed_filter)


class RvcSettings(_Section):
    """`rvc_settings`: voice conversion defaults."""

    rvc_enabled: bool = Field(False, description="Master switch for RVC.")
    rvc_char_model_file: str = Field("Disabled", description="Default character RVC voice.")
    rvc_narr_model_file: str = Field("Disabled", description="Default narrator RVC voice.")
    split_audio: bool = True
    autotune: bool = False
    pitch: float = Field(0, description="Default transposition in semitones.")
    filter_radius: int = 3
    index_rate: float = 0.75
    rms_mix_rate: float = 1
    protect: float = 0.5
    hop_length: int = 130
    f0method: str = "fcpe"
    embedder_model: str = "hubert"
    training_data_size: int = 45000


class AllTalkConfig(_Section):
    """The whole `confignew.json`."""

    output_folder: str = Field("outputs", description="Where generated files go (relative to the root, or absolute).")
    transcode_audio_format: str = Field(
        "Disabled",
        description="Post-generation transcode target: Disabled, aac, flac, mp3, opus, wav, vorbis (or ogg, m4a).",
    )
    delete_output_wavs: str = Field("Disabled", description="Output retention, e.g. '7 Days'.")
    gradio_interface: bool = True
    gradio_port_number: int = 7852
    api_def: ApiDefaults = Field(default_factory=ApiDefaults)
    rvc_settings: RvcSettings = Field(default_factory=RvcSettings)
    debugging: dict[str, bool] = Field(default_factory=dict)
    tgwui: dict[str, object] = Field(default_factory=dict)

    @field_validator("transcode_audio_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        allowed = ("disabled", "aac", "flac", "mp3", "opus", "wav", "vorbis", "ogg", "m4a")
        if value.lower() not in allowed:
            raise ValueError(f"must be one of Disabled, {', '.join(allowed[1:])}")
        return value


class ConfigFileError(ValueError):
    """A settings file exists but cannot be used; the message names the file and the problem."""


M = TypeVar("M", bound=BaseModel)


def read_json_model(path: Path, model: type[M]) -> M:
    """Reads `path` into `model`; a missing file gives the defaults."""
    if not path.is_file():
        return model()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return model.model_validate(data)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"{path.name} is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigFileError(f"{path.name} has invalid values: {problems}") from exc


def write_json_model(path: Path, value: BaseModel) -> None:
    """Writes atomically (temporary file, then rename) so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value.model_dump(mode="json", by_alias=True), indent=4) + "\n", encoding="utf-8")
    tmp.replace(path)
