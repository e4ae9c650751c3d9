"""Voices a replica keeps loaded (Serve multiplexes them by name) stay true to their files: each
use compares the files' version with the one loaded, and a voice replaced by an upload is loaded
again on that replica; one removed is gone for new requests while those that hold it finish."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class LoadedVoice:
    voice: Any
    version: object


async def load_held(name: str, version_of: Callable[[str], object], load: Callable[[str], Any]) -> LoadedVoice:
    """`name` loaded now, with the version of its files when it was (read first: a change while
    it loads is then seen at the next use)."""
    version = await asyncio.to_thread(version_of, name)
    return LoadedVoice(await asyncio.to_thread(load, name), version)


async def fresh_voice(held: LoadedVoice, name: str, version_of: Callable[[str], object],
                      load: Callable[[str], Any]) -> Any:
    """`held`'s voice, loaded again first when `version_of(name)` has changed since (it raises
    the engine's unknown-voice error when the files are gone)."""
    version = await asyncio.to_thread(version_of, name)
    if version != held.version:
        held.voice, held.version = await asyncio.to_thread(load, name), version
    return held.voice
