"""VoiceLibrary: the stored side of uploaded voices. An upload is written and checked in a
staging folder of its own under the server root, then published into the voice folders in one
rename (so no replica ever lists half a voice, and a refused upload leaves nothing behind).
Beside the voices it keeps who stored each one (a hash of the client: API key or address; the
per-client quota counts these) and a version file that changes with every change, which
ingress replicas watch to drop the voice lists they cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from ..config.paths import ServerPaths
from .errors import NoSuchVoice, VoiceExists, VoiceQuotaReached
from .layout import VoiceKind, holds_voice, stored_places

_LOGGER = logging.getLogger(__name__)


def library_version(paths: ServerPaths) -> tuple[int, int] | None:
    """Changes whenever a voice is stored or removed through the library (on any replica sharing
    the root): the version file is replaced each time, so its inode changes."""
    try:
        stat = (paths.voice_library / "version").stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _owner_hash(client: str) -> str:
    return hashlib.sha256(client.encode()).hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class VoiceLibrary:
    def __init__(self, paths: ServerPaths, max_voices_per_client: int):
        self.paths = paths
        self.max_voices_per_client = max_voices_per_client
        self.home = paths.voice_library

    # ----- staging

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh folder for one upload on the server root's file system; removed afterwards
        with whatever was not published."""
        folder = self.home / "incoming" / secrets.token_hex(16)
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def sweep_incoming(self, older_than_s: float, now: float) -> int:
        """Removes staging folders left by uploads that never finished (a replica that died mid-way)."""
        removed = 0
        incoming = self.home / "incoming"
        for folder in incoming.iterdir() if incoming.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):
                if now - folder.stat().st_mtime > older_than_s:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
        return removed

    # ----- rules

    def check_free(self, kind: VoiceKind, name: str, replace: bool) -> None:
        """VoiceExists when the name is taken: by a voice (unless replacing it) or by other files."""
        for place in stored_places(self.paths, kind, name):
            if not (place.exists() or place.is_symlink()):
                continue
            if not holds_voice(place, kind, name):
                raise VoiceExists(f"the name {name!r} is taken by other files in the {kind} voice folder; choose "
                                  "another name")
            if not replace:
                raise VoiceExists(f"a {kind} voice named {name!r} exists; send replace=true to replace it")

    def check_quota(self, kind: VoiceKind, name: str, client: str) -> None:
        """Raises VoiceQuotaReached when `client` already stores its quota of voices (replacing
        one of its own does not count)."""
        mine = [found for found in self._records(_owner_hash(client)) if found != (kind, name)]
        if len(mine) >= self.max_voices_per_client:
            raise VoiceQuotaReached(f"this client stores {len(mine)} voices, its quota "
                                    f"(max_voices_per_client); remove one first")

    # ----- changes

    def publish(self, staged: Path, target: Path, replace: bool) -> None:
        """Moves `staged` (a file or a folder) to `target` in one rename. Without `replace` an
        existing target is VoiceExists; with it the old one is swapped out and removed."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if staged.is_file():
            if replace:
                os.replace(staged, target)
                return
            try:
                os.link(staged, target)  # fails when the target exists: never overwrites
            except FileExistsError:
                raise VoiceExists(f"{target.name} exists; send replace=true to replace it") from None
            staged.unlink()
            return
        old = None
        if target.exists():
            if not replace:
                raise VoiceExists(f"{target.name} exists; send replace=true to replace it")
            old = self.home / "incoming" / f"replaced-{secrets.token_hex(8)}"
            os.rename(target, old)
        try:
            os.rename(staged, target)
        except OSError as exc:  # another upload published the same name meanwhile
            raise VoiceExists(f"{target.name} was stored by another upload meanwhile") from exc
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def keep_only(self, kind: VoiceKind, name: str, kept: Path) -> None:
        """Removes the other places of a name (an XTTS clip replaced by a set, or the reverse)."""
        for place in stored_places(self.paths, kind, name):
            if place != kept and holds_voice(place, kind, name):
                _remove(place)

    def stored(self, kind: VoiceKind, name: str, client: str) -> None:
        """Records who stored a voice and announces the change."""
        record = self._record_file(kind, name)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"owner": _owner_hash(client), "stored": time.time()}))
        self._bump_version()
        _LOGGER.info("voice library: %s voice %r stored", kind, name)

    def remove(self, kind: VoiceKind, name: str) -> None:
        """Removes a voice (uploaded or put there by hand); NoSuchVoice when there is none.
        Requests that loaded it finish: replicas keep what they loaded until they next look."""
        places = [place for place in stored_places(self.paths, kind, name) if holds_voice(place, kind, name)]
        if not places:
            raise NoSuchVoice(f"no {kind} voice named {name!r}")
        for place in places:
            _remove(place)
        self._record_file(kind, name).unlink(missing_ok=True)
        self._bump_version()
        _LOGGER.info("voice library: %s voice %r removed", kind, name)

    # ----- records

    def _record_file(self, kind: VoiceKind, name: str) -> Path:
        return self.home / "owners" / kind / f"{name}.json"

    def _records(self, owner: str) -> list[tuple[str, str]]:
        """(kind, name) of the voices `owner` stored that are still there."""
        found = []
        for record in (self.home / "owners").glob("*/*.json"):
            kind, name = record.parent.name, record.stem
            with contextlib.suppress(OSError, ValueError):
                if json.loads(record.read_text())["owner"] == owner and \
                        any(holds_voice(p, kind, name) for p in stored_places(self.paths, kind, name)):  # type: ignore[arg-type]
                    found.append((kind, name))
        return found

    def _bump_version(self) -> None:
        fresh = self.home / f"version.{secrets.token_hex(8)}"
        fresh.write_text(secrets.token_hex(8))
        os.replace(fresh, self.home / "version")  # a new file each time (see library_version)
