"""SettingsStore: the settings files of one server root, loaded at start and on reload."""

from __future__ import annotations

import json
import threading

from ..engine_types import EngineInfo
from .alltalk import AllTalkConfig, ConfigFileError, read_json_model, write_json_model
from .engine_settings import EnginesFile, ModelSettings, OpenAIVoiceMap
from .paths import ServerPaths


def builtin_model_settings(info: EngineInfo) -> ModelSettings:
    """What an engine's settings are when its `model_settings.json` does not exist."""
    return ModelSettings.model_validate({
        "model_details": {"manufacturer_name": info.manufacturer_name},
        "settings": {"def_character_voice": info.default_voice, "def_narrator_voice": info.default_voice},
        "openai_voices": OpenAIVoiceMap.all_to(info.default_voice).model_dump(),
    })


class SettingsStore:
    """Holds the loaded settings; `reload()` swaps them in one step or keeps the old ones."""

    def __init__(self, paths: ServerPaths):
        self.paths = paths
        self._lock = threading.Lock()
        self.config = AllTalkConfig()
        self.engines = EnginesFile()
        self._model_settings: dict[str, ModelSettings] = {}
        self.reload()

    def reload(self) -> None:
        """Re-reads confignew.json and tts_engines.json; raises ConfigFileError and keeps the
        current settings when a file is malformed."""
        config = read_json_model(self.paths.config_file, AllTalkConfig)
        engines = read_json_model(self.paths.engines_file, EnginesFile)
        with self._lock:
            self.config, self.engines = config, engines
            self._model_settings = {}

    def model_settings(self, info: EngineInfo) -> ModelSettings:
        """The engine's file merged over its built-in defaults (cached until the next reload)."""
        with self._lock:
            cached = self._model_settings.get(info.engine)
        if cached is not None:
            return cached
        merged = builtin_model_settings(info).model_dump()
        path = self.paths.model_settings_file(info.engine)
        if path.is_file():
            try:
                from_file = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ConfigFileError(f"{path.name} of {info.engine} is not valid JSON: {exc}") from exc
            for section, values in from_file.items():
                if isinstance(values, dict) and isinstance(merged.get(section), dict):
                    merged[section].update(values)
                else:
                    merged[section] = values
        settings = ModelSettings.model_validate(merged)
        with self._lock:
            self._model_settings[info.engine] = settings
        return settings

    def save_model_settings(self, engine: str, settings: ModelSettings) -> None:
        write_json_model(self.paths.model_settings_file(engine), settings)
        with self._lock:
            self._model_settings[engine] = settings
