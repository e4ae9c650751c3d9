"""Output files: AllTalk's naming rules with a random part that makes concurrent requests safe,
atomic writes (a reader never sees half a file), and lookups for `/audio/{name}`."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .safe_paths import UnsafeName, resolve_inside

TEMP_PREFIX = ".partial-"
SAFE_FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


def output_name(base: str, ext: str, timestamp: bool, suffix: str = "", now: float | None = None) -> str:
    """`<base>_<unix seconds><5 hex><suffix>.<ext>` with a timestamp, `<base>_<5 hex><suffix>.<ext>`
    without. AllTalk leaves the random part out when the timestamp is off (and in narrator
    files); it is kept here so that two users asking for the same name never overwrite each
    other (clients use the returned URL)."""
    rand = secrets.token_hex(3)[:5]
    stamp = f"{int(time.time() if now is None else now)}" if timestamp else ""
    return f"{base}_{stamp}{rand}{suffix}.{ext}"


class OutputStore:
    """The output folder of one server."""

    def __init__(self, folder: Path):
        self.folder = folder

    def write_new(self, base: str, ext: str, timestamp: bool, write: Callable[[BinaryIO], object],
                  suffix: str = "") -> Path:
        """Writes a new file through `write` and publishes it under a fresh name, never replacing
        an existing file. Nothing is left behind when `write` raises."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.partial_file() as (tmp_path, handle):
            write(handle)
            handle.flush()  # complete before it is linked; no fsync: outputs need not survive a power cut
            for _ in range(16):
                final = self.folder / output_name(base, ext, timestamp, suffix)
                try:
                    os.link(tmp_path, final)  # fails if the name exists: no overwrite, no race
                except FileExistsError:
                    continue
                return final
        raise FileExistsError(f"could not find a free output name for {base!r}")

    def write_named(self, filename: str, write: Callable[[BinaryIO], object]) -> Path:
        """Writes `filename` (one plain name inside the folder), replacing it atomically."""
        if not SAFE_FILENAME.fullmatch(filename):
            raise UnsafeName(f"{filename!r} is not a plain file name")
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / filename
        with self.partial_file() as (tmp_path, handle):
            write(handle)
            handle.flush()
            os.replace(tmp_path, final)
        return final

    @contextlib.contextmanager
    def partial_file(self) -> Iterator[tuple[Path, BinaryIO]]:
        """A temporary file in the folder (hidden from listings), removed on leaving: a caller
        publishes it by renaming or linking it first."""
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield Path(name), handle
        finally:
            Path(name).unlink(missing_ok=True)

    def find(self, name: str) -> Path | None:
        """The published file called `name` (one segment, inside the folder), or None."""
        if "/" in name or "\\" in name or name.startswith(TEMP_PREFIX):
            return None
        try:
            path = resolve_inside(self.folder, name)
        except UnsafeName:
            return None
        return path if path.is_file() else None
