"""What users chose for each engine over the API, as the settings files keep it: the model
(tts_engines.json) and DeepSpeed and LowVRAM (the engine's model_settings.json). Whoever starts an
engine application (the launcher, the builder under `serve deploy`, the ingress starting one on
demand) starts it with these."""

from __future__ import annotations

import json
import logging
from typing import Any

from .alltalk import ConfigFileError, read_json_model
from .engine_settings import EnginesFile
from .paths import ServerPaths

_LOGGER = logging.getLogger(__name__)


def saved_engine_choices(paths: ServerPaths, engine: str) -> dict[str, Any]:
    """The engine's saved choices as `user_config` keys of its deployment (EngineUserConfig); empty
    when nothing was chosen."""
    options: dict[str, Any] = {}
    try:
        if model := read_json_model(paths.engines_file, EnginesFile).selected_model_for(engine):
            options["model"] = model
    except ConfigFileError as exc:  # the engine still starts, with its first model
        _LOGGER.warning("ignoring the saved model of %s: %s", engine, exc)
    settings_file = paths.model_settings_file(engine)
    try:
        saved = json.loads(settings_file.read_text(encoding="utf-8")).get("settings", {}) \
            if settings_file.is_file() else None
    except (ValueError, AttributeError) as exc:
        _LOGGER.warning("ignoring %s: %s", settings_file.name, exc)
        saved = None
    if isinstance(saved, dict):
        options.update(deepspeed=bool(saved.get("deepspeed_enabled", False)),
                       lowvram=bool(saved.get("lowvram_enabled", False)))
    return options
