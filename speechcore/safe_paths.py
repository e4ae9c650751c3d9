"""Resolve client-supplied names strictly inside one folder: no absolute paths, no `..`, no NUL,
no symlink that leads out."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_SEGMENT_BYTES = 255
"""The longest file name Linux, macOS and Windows file systems take."""


class UnsafeName(ValueError):
    """A client-supplied name tried to leave its folder or is not a usable relative name."""


def unsafe_reason(name: str) -> str | None:
    """Why `name` cannot be a relative name inside a folder, or None when it can."""
    if not name or not name.strip():
        return "must not be empty"
    if "\x00" in name:
        return "must not contain NUL characters"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "must be a relative name, not an absolute path"
    parts = re.split(r"[\\/]", name)
    if any(part == ".." for part in parts):
        return "must not contain '..' path segments"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for part in parts):
        return f"has a name longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def resolve_inside(base: Path, name: str) -> Path:
    """`base/name`, resolved, guaranteed to be inside `base` (symlinks included)."""
    reason = unsafe_reason(name)
    if reason:
        raise UnsafeName(f"{name!r} {reason}")
    root = base.resolve()
    candidate = (root / PurePosixPath(name.replace("\\", "/"))).resolve()
    if candidate != root and root not in candidate.parents:
        raise UnsafeName(f"{name!r} leads outside its folder")
    return candidate
