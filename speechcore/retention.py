"""Output retention: AllTalk's `delete_output_wavs` setting ("Disabled", "1 Day", "7 Days", ...)
applied by the server itself, periodically, instead of once at a launcher's start. Only finished
files are candidates: a file being written has a `.partial-` name until it is complete."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from .storage import TEMP_PREFIX

_LOGGER = logging.getLogger(__name__)
_RETENTION = re.compile(r"\s*(\d+)\s*(minute|hour|day|week)s?\s*", re.IGNORECASE)
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


def retention_seconds(setting: str) -> float | None:
    """Seconds an output is kept, or None when retention is off ("Disabled", or a value that is
    not a duration: keeping files is the safe reading)."""
    found = _RETENTION.fullmatch(setting or "")
    if not found or int(found.group(1)) <= 0:
        return None
    return int(found.group(1)) * _UNIT_S[found.group(2).lower()]


def remove_expired(folder: Path, keep_s: float, now: float) -> list[Path]:
    """Deletes the finished files directly in `folder` last modified more than `keep_s` ago."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if path.name.startswith(TEMP_PREFIX) or path.is_symlink() or not path.is_file():
            continue
        try:
            if now - path.stat().st_mtime > keep_s:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # removed by another replica meanwhile
            continue
    return removed


async def retention_loop(current: Callable[[], tuple[Path, str]], every_s: float = 600.0) -> None:
    """Every `every_s` seconds, applies the current (output folder, `delete_output_wavs`); both are
    read each time, so a reloaded config takes effect without a restart."""
    while True:
        folder, setting = current()
        keep_s = retention_seconds(setting)
        if keep_s is not None:
            removed = await asyncio.to_thread(remove_expired, folder, keep_s, time.time())
            if removed:
                _LOGGER.info("output retention: removed %d file(s) older than %s", len(removed), setting)
        await asyncio.sleep(every_s)
