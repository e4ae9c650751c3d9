"""WAV files and the length-unknown WAV header used by streaming responses."""

from __future__ import annotations

import struct
import wave
from collections.abc import Iterable
from typing import BinaryIO

from .pcm import SAMPLE_WIDTH, PcmChunk


def streaming_wav_header(sample_rate: int, channels: int = 1) -> bytes:
    """A 44-byte RIFF/WAVE header whose sizes say "unknown length" (RIFF size 36, data size 0)."""
    block_align = channels * SAMPLE_WIDTH
    return (
        b"RIFF" + struct.pack("<I", 36) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 16)
        + b"data" + struct.pack("<I", 0)
    )


def write_wav(out: BinaryIO, sample_rate: int, chunks: Iterable[PcmChunk]) -> int:
    """Writes mono 16-bit WAV to `out`; returns the number of frames. Every chunk must share
    `sample_rate` (the caller resamples first)."""
    frames = 0
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        for chunk in chunks:
            if chunk.sample_rate != sample_rate:
                raise ValueError(f"chunk at {chunk.sample_rate} Hz in a {sample_rate} Hz file")
            wav.writeframes(chunk.pcm)
            frames += chunk.frames
    return frames
