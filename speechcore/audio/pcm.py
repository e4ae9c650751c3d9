"""PcmChunk: the unit of audio that crosses deployment handles (serialisable, self-describing)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_WIDTH = 2  # bytes: signed 16-bit little-endian


@dataclass(frozen=True)
class PcmChunk:
    """Mono 16-bit little-endian PCM at `sample_rate`."""

    pcm: bytes
    sample_rate: int

    @property
    def frames(self) -> int:
        return len(self.pcm) // SAMPLE_WIDTH

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    @classmethod
    def from_float(cls, samples: np.ndarray, sample_rate: int) -> "PcmChunk":
        """From float samples in [-1, 1] (clipped)."""
        ints = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
        return cls(ints.tobytes(), sample_rate)
