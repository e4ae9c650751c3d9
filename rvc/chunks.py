"""Converting PCM chunks: engines stream a sentence or less at a time; very short pieces convert
badly (the embedder and pitch trackers need context), so chunks are gathered to at least
`min_seconds` before each conversion."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np

from speechcore.audio.pcm import PcmChunk
from speechcore.rvc_requests import ConversionRequest

from .pipeline import VoiceConverter, VoiceModel

MIN_SECONDS = 1.0


def convert_chunk(converter: VoiceConverter, voice: VoiceModel, chunk: PcmChunk,
                  request: ConversionRequest) -> PcmChunk:
    samples = np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float32) / 32768.0
    return PcmChunk.from_float(converter.convert(voice, samples, chunk.sample_rate, request), voice.sample_rate)


class ChunkGatherer:
    """Collects chunks of one rate until they make `min_seconds`; `flush()` gives the rest."""

    def __init__(self, min_seconds: float = MIN_SECONDS):
        self.min_seconds = min_seconds
        self._parts: list[PcmChunk] = []

    def add(self, chunk: PcmChunk) -> PcmChunk | None:
        if self._parts and self._parts[0].sample_rate != chunk.sample_rate:
            raise ValueError("chunks of one stream must share one sample rate")
        self._parts.append(chunk)
        if sum(p.duration_s for p in self._parts) >= self.min_seconds:
            return self.flush()
        return None

    def flush(self) -> PcmChunk | None:
        if not self._parts:
            return None
        joined = PcmChunk(b"".join(p.pcm for p in self._parts), self._parts[0].sample_rate)
        self._parts = []
        return joined


async def converted_stream(chunks: AsyncIterator[PcmChunk], convert: Callable[[PcmChunk], Awaitable[PcmChunk]],
                           min_seconds: float = MIN_SECONDS) -> AsyncIterator[PcmChunk]:
    """`chunks` gathered to `min_seconds` and passed through `convert`, in order."""
    gatherer = ChunkGatherer(min_seconds)
    async for chunk in chunks:
        ready = gatherer.add(chunk)
        if ready is not None:
            yield await convert(ready)
    rest = gatherer.flush()
    if rest is not None:
        yield await convert(rest)
