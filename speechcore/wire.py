"""JSON request bodies: unknown fields are ignored, as the clients of AllTalk's API expect (the
OpenAI SDK sends `instructions`, the TTS Generator page sends UI state), and named in the log, so
that a misspelt field is visible instead of silently dropped."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

_LOGGER = logging.getLogger(__name__)


class JsonBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _log_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(cls.model_fields) | \
                    {field.alias for field in cls.model_fields.values() if field.alias}
            if unknown := sorted(str(key) for key in data if key not in known):
                _LOGGER.info("%s: ignored unknown field(s) %s", cls.__name__, ", ".join(unknown))
        return data
