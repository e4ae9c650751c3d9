"""Reference clips for XTTS voice cloning, made from what a user uploads: any format FFmpeg
decodes, read as mono at the rate XTTS reads, silence trimmed from both ends, checked for length,
brought to one loudness (ITU-R BS.1770, pyloudnorm) with the peaks kept below full scale."""

from __future__ import annotations

import av
import numpy as np
import pyloudnorm

from ..audio.encode import AudioTooLong, decode_mono
from ..audio.pcm import PcmChunk
from ..config.app_args import ClipArgs
from .errors import VoiceRefused
from .layout import XTTS_CLIP_RATE

FRAME_S = 0.02
EDGE_S = 0.1
"""Kept on each side of the speech when silence is trimmed (a clip cut at the first syllable sounds clipped)."""


def prepare_clip(path: str, label: str, rules: ClipArgs) -> PcmChunk:
    """The clip at `path` ready to store, or VoiceRefused saying why not (`label` names it)."""
    try:
        decoded = decode_mono(path, XTTS_CLIP_RATE, rules.max_input_s)
    except AudioTooLong as exc:
        raise VoiceRefused(f"{label}: {exc}; a reference clip is {rules.min_s:g}-{rules.max_s:g} s") from None
    except (av.FFmpegError, IndexError, UnicodeDecodeError) as exc:  # IndexError: no audio stream
        raise VoiceRefused(f"{label}: not an audio file that can be decoded ({type(exc).__name__})") from None
    samples = np.frombuffer(decoded.pcm, dtype="<i2").astype(np.float64) / 32768.0
    speech = trim_silence(samples, XTTS_CLIP_RATE, rules.silence_db)
    seconds = len(speech) / XTTS_CLIP_RATE
    if not rules.min_s <= seconds <= rules.max_s:
        raise VoiceRefused(f"{label}: {seconds:.1f} s of sound after trimming silence; a reference clip is "
                           f"{rules.min_s:g}-{rules.max_s:g} s")
    return PcmChunk.from_float(normalise_loudness(speech, XTTS_CLIP_RATE, rules), XTTS_CLIP_RATE)


def trim_silence(samples: np.ndarray, rate: int, silence_db: float) -> np.ndarray:
    """`samples` without the frames quieter than `silence_db` below the loudest at either end."""
    frame = int(FRAME_S * rate)
    frames = len(samples) // frame
    if frames == 0:
        return samples[:0]
    rms = np.sqrt(np.mean(samples[:frames * frame].reshape(frames, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > max(rms.max() * 10 ** (silence_db / 20), 1e-4))
    if len(loud) == 0:
        return samples[:0]
    edge = int(EDGE_S * rate)
    return samples[max(0, loud[0] * frame - edge):min(len(samples), (loud[-1] + 1) * frame + edge)]


def normalise_loudness(samples: np.ndarray, rate: int, rules: ClipArgs) -> np.ndarray:
    """`samples` at `rules.loudness_lufs` integrated loudness, scaled down further if a peak
    would pass `rules.peak`."""
    loudness = pyloudnorm.Meter(rate).integrated_loudness(samples)
    if not np.isfinite(loudness):
        raise VoiceRefused("the clip has no sound loud enough to measure")
    louder = samples * 10 ** ((rules.loudness_lufs - loudness) / 20)
    peak = float(np.max(np.abs(louder)))
    return louder * (rules.peak / peak) if peak > rules.peak else louder
