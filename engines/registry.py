"""Engine names to classes, as import strings so that importing this module loads no engine, and
what each engine needs installed (the project's extras)."""

from __future__ import annotations

import importlib
import importlib.util

from .base import TTSEngine

ENGINE_CLASSES: dict[str, str] = {
    "piper": "engines.piper:PiperEngine",
    "vits": "engines.vits:VitsEngine",
    "xtts": "engines.xtts:XttsEngine",
}


ENGINE_EXTRAS: dict[str, str] = {"vits": "coqui", "xtts": "coqui"}
"""Engines that need an extra of the project (pyproject.toml) beyond the base install."""
EXTRA_MODULES: dict[str, tuple[str, ...]] = {"coqui": ("TTS", "torch")}


def installed_engines() -> list[str]:
    """The engines whose extra is installed in this Python environment (Piper always is)."""
    return [name for name in ENGINE_CLASSES
            if all(importlib.util.find_spec(module) is not None
                   for module in EXTRA_MODULES.get(ENGINE_EXTRAS.get(name, ""), ()))]


def load_engine_class(name: str) -> type[TTSEngine]:
    try:
        target = ENGINE_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; this build has {', '.join(ENGINE_CLASSES)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
