"""Engine names to classes, as import strings so that importing this module loads no engine."""

from __future__ import annotations

import importlib

from .base import TTSEngine

ENGINE_CLASSES: dict[str, str] = {
    "piper": "engines.piper:PiperEngine",
    "vits": "engines.vits:VitsEngine",
    "xtts": "engines.xtts:XttsEngine",
}


def load_engine_class(name: str) -> type[TTSEngine]:
    try:
        target = ENGINE_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; this build has {', '.join(ENGINE_CLASSES)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
