"""Where each kind of voice lives in the server root (AllTalk's folders), the name clients use
for it, and the names an upload may take. The engines read the same layout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from ..config.paths import ServerPaths

VoiceKind = Literal["xtts", "piper", "rvc"]

XTTS_VOICE_SETS = "xtts_multi_voice_sets"
"""Under voices/: one folder of clips per voice set (`voiceset:<name>`)."""
XTTS_LATENTS = "xtts_latents"
"""Under voices/: saved conditioning latents (`latent:<file>.json`)."""
XTTS_SET_CLIPS = 5
"""Clips of a voice set that XTTS conditions on (the first ones, by name)."""
XTTS_CLIP_RATE = 22050
"""The rate XTTS reads reference clips at."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an uploaded voice, or None: letters, digits, `_`, `-` and `.`, not
    first, at most 100 characters (a plain file name in every folder, on every file system)."""
    if _NAME.fullmatch(name) and not name.endswith("."):
        return None
    return (f"voice name {name!r} must be 1-100 letters, digits, '_', '-' or '.', starting with a letter, digit "
            "or '_' and not ending with '.'")


def clip_voice(paths: ServerPaths, name: str) -> tuple[Path, str]:
    """One XTTS reference clip: its file and the voice name clients use."""
    return paths.voices / f"{name}.wav", f"{name}.wav"


def clip_set(paths: ServerPaths, name: str) -> tuple[Path, str]:
    """An XTTS voice set: its folder and the voice name clients use."""
    return paths.voices / XTTS_VOICE_SETS / name, f"voiceset:{name}"


def piper_voice(paths: ServerPaths, name: str) -> tuple[Path, str]:
    """An uploaded Piper voice: its folder (`<name>.onnx` and `<name>.onnx.json`) and voice name."""
    return paths.engine_models("piper") / name, f"{name}/{name}.onnx"


def rvc_voice(paths: ServerPaths, name: str) -> tuple[Path, str]:
    """An uploaded RVC voice: its folder (`<name>.pth`, `<name>.index`) and the name clients use."""
    return paths.rvc_voices / name, f"{name}/{name}.pth"


def stored_places(paths: ServerPaths, kind: VoiceKind, name: str) -> list[Path]:
    """Every place a voice `name` of `kind` may be stored (an XTTS name is a clip or a set)."""
    if kind == "xtts":
        return [clip_voice(paths, name)[0], clip_set(paths, name)[0]]
    return [(piper_voice if kind == "piper" else rvc_voice)(paths, name)[0]]


def file_versions(files: list[Path]) -> tuple[tuple[int, int, int], ...]:
    """(inode, size, modification time) of each file of a voice: a replaced or rewritten file
    changes it, so a replica that loaded the voice knows to load it again."""
    versions = []
    for path in files:
        stat = path.stat()
        versions.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(versions)


def holds_voice(place: Path, kind: VoiceKind, name: str) -> bool:
    """Whether a place of stored_places() holds that voice. A Piper or RVC folder is the voice's
    only when its model has the folder's name (`amy/amy.onnx`); a folder of other voices that
    happens to have the name is not one (it is neither replaced nor removed)."""
    if kind == "xtts":
        return place.is_file() or place.is_dir()
    return (place / f"{name}{'.onnx' if kind == 'piper' else '.pth'}").is_file()
