"""VoiceUploads: one upload of each kind from received files to a listed voice. XTTS clips are
prepared here (decoding and loudness need no engine); a Piper or RVC voice is checked by a
replica of its engine, with the engine's own loading code, on the staged files (the server root
is shared, so any replica on any node reads them) before it is published."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..audio.wav import write_wav
from ..config.app_args import ClipArgs
from ..config.paths import ServerPaths
from .clips import prepare_clip
from .errors import VoiceFileTooLarge, VoiceRefused
from .layout import XTTS_SET_CLIPS, VoiceKind, clip_set, clip_voice, name_problem, piper_voice, rvc_voice
from .library import VoiceLibrary

COPY_BLOCK = 1 << 20
FilesCheck = Callable[[list[str]], Awaitable[None]]
"""Asks an engine whether staged files (relative to the server root) make a voice it can load;
raises VoiceFilesRefused with the reason when not."""


@dataclass(frozen=True)
class Received:
    """One uploaded file: the name the client gave it and its content."""

    filename: str
    content: BinaryIO


class VoiceUploads:
    def __init__(self, paths: ServerPaths, library: VoiceLibrary, clip_rules: ClipArgs, max_file_bytes: int,
                 check_piper: FilesCheck, check_rvc: FilesCheck):
        self.paths, self.library = paths, library
        self.clip_rules = clip_rules
        self.max_file_bytes = max_file_bytes
        self.check_piper, self.check_rvc = check_piper, check_rvc

    async def add_xtts(self, name: str, clips: list[Received], replace: bool, client: str) -> str:
        """One clip makes `<name>.wav`, several a voice set `voiceset:<name>`."""
        await asyncio.to_thread(self._check, name, "xtts", replace, client)
        if not 1 <= len(clips) <= XTTS_SET_CLIPS:
            raise VoiceRefused(f"an XTTS voice takes 1 to {XTTS_SET_CLIPS} clips (XTTS conditions on at most "
                               f"{XTTS_SET_CLIPS}); got {len(clips)}")
        with self.library.staging() as stage:
            prepared = stage / "prepared"
            prepared.mkdir()
            for i, clip in enumerate(clips, 1):
                raw = await self._receive(clip, stage / f"upload-{i}")
                audio = await asyncio.to_thread(prepare_clip, str(raw), clip.filename or f"clip {i}", self.clip_rules)
                with (prepared / f"{name}_{i:02d}.wav").open("wb") as out:
                    await asyncio.to_thread(write_wav, out, audio.sample_rate, [audio])
            target, voice = clip_voice(self.paths, name) if len(clips) == 1 else clip_set(self.paths, name)
            staged = next(prepared.iterdir()) if len(clips) == 1 else prepared
            await asyncio.to_thread(self._publish, "xtts", name, staged, target, replace, client)
        return voice

    async def add_piper(self, name: str, model: Received, config: Received, replace: bool, client: str) -> str:
        await asyncio.to_thread(self._check, name, "piper", replace, client)
        with self.library.staging() as stage:
            voice_dir = stage / name
            voice_dir.mkdir()
            await self._receive(model, voice_dir / f"{name}.onnx")
            await self._receive(config, voice_dir / f"{name}.onnx.json")
            await self.check_piper([self._relative(voice_dir / f"{name}.onnx")])
            target, voice = piper_voice(self.paths, name)
            await asyncio.to_thread(self._publish, "piper", name, voice_dir, target, replace, client)
        return voice

    async def add_rvc(self, name: str, model: Received, index: Received | None, replace: bool, client: str) -> str:
        await asyncio.to_thread(self._check, name, "rvc", replace, client)
        with self.library.staging() as stage:
            voice_dir = stage / name
            voice_dir.mkdir()
            files = [await self._receive(model, voice_dir / f"{name}.pth")]
            if index is not None:
                files.append(await self._receive(index, voice_dir / f"{name}.index"))
            await self.check_rvc([self._relative(f) for f in files])
            target, voice = rvc_voice(self.paths, name)
            await asyncio.to_thread(self._publish, "rvc", name, voice_dir, target, replace, client)
        return voice

    async def remove(self, kind: VoiceKind, name: str) -> None:
        if problem := name_problem(name):
            raise VoiceRefused(problem)
        await asyncio.to_thread(self.library.remove, kind, name)

    def _check(self, name: str, kind: VoiceKind, replace: bool, client: str) -> None:
        """The rules that need no file: a plain name, free unless replacing, within the quota."""
        if problem := name_problem(name):
            raise VoiceRefused(problem)
        self.library.check_free(kind, name, replace)
        self.library.check_quota(kind, name, client)

    def _publish(self, kind: VoiceKind, name: str, staged: Path, target: Path, replace: bool, client: str) -> None:
        self.library.publish(staged, target, replace)
        if replace:
            self.library.keep_only(kind, name, target)
        self.library.stored(kind, name, client)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.paths.root).as_posix()

    async def _receive(self, received: Received, destination: Path) -> Path:
        """Copies an uploaded file into the staging folder; VoiceFileTooLarge past the per-file limit."""
        def copy() -> None:
            written = 0
            received.content.seek(0)
            with destination.open("wb") as out:
                while block := received.content.read(COPY_BLOCK):
                    written += len(block)
                    if written > self.max_file_bytes:
                        raise VoiceFileTooLarge(f"{received.filename or destination.name}: larger than "
                                                f"{self.max_file_bytes} bytes (max_file_bytes)")
                    out.write(block)
        await asyncio.to_thread(copy)
        return destination
