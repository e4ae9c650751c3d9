"""Pitch (f0) tracking at 100 frames per second on 16 kHz audio. WORLD (harvest, dio), Praat (pm),
torchcrepe and torchfcpe need no downloaded weights (the last two ship theirs); rmvpe needs the
user's models/rvc_base/rmvpe.pt."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechcore.rvc_requests import VoiceConversionError, hybrid_members

from .checkpoint import MissingWeights

SAMPLE_RATE = 16_000
HOP = 160  # 10 ms
F0_MIN, F0_MAX = 50.0, 1100.0


def fit_frames(f0: np.ndarray, frames: int) -> np.ndarray:
    """Pads (centred, with zeros) or trims a contour to `frames` values."""
    f0 = np.asarray(f0, dtype=np.float32)
    if len(f0) >= frames:
        return f0[:frames]
    left = (frames - len(f0)) // 2
    return np.pad(f0, (left, frames - len(f0) - left))


def resample_contour(f0: np.ndarray, frames: int) -> np.ndarray:
    """Linear interpolation of a contour onto `frames` equally spaced points; unvoiced stays 0."""
    if len(f0) == frames or len(f0) < 2:
        return fit_frames(f0, frames)
    source = np.linspace(0.0, 1.0, len(f0))
    target = np.linspace(0.0, 1.0, frames)
    voiced = np.interp(target, source, (f0 > 0).astype(np.float32)) > 0.5
    return np.where(voiced, np.interp(target, source, f0), 0.0).astype(np.float32)


def combine_contours(contours: np.ndarray) -> np.ndarray:
    """[members, frames] -> a frame is voiced when at least half the members hear a pitch; its f0
    is the median of those that do."""
    voiced = contours > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames no member voices: all-NaN, dropped below
        median = np.nanmedian(np.where(voiced, contours, np.nan), axis=0)
    keep = voiced.sum(axis=0) * 2 >= len(contours)
    return np.where(keep, np.nan_to_num(median), 0.0).astype(np.float32)


class PitchTracker:
    """Runs one f0 method; keeps the neural trackers loaded between calls."""

    def __init__(self, base_dir: Path, device: torch.device):
        self.base_dir, self.device = base_dir, device
        self._fcpe_model: Any = None
        self._rmvpe_model: Any = None

    def f0(self, method: str, audio: np.ndarray, frames: int, hop_length: int, filter_radius: int) -> np.ndarray:
        members = hybrid_members(method)
        if members:
            contours = np.stack([self.f0(m, audio, frames, hop_length, filter_radius) for m in members])
            return combine_contours(contours)
        trackers = {"pm": self._pm, "harvest": self._harvest, "dio": self._dio, "crepe": self._crepe,
                    "crepe-tiny": self._crepe_tiny, "fcpe": self._fcpe, "rmvpe": self._rmvpe}
        tracker = trackers.get(method)
        if tracker is None:
            raise VoiceConversionError(f"unknown f0 method {method!r}")
        return tracker(audio, frames, hop_length, filter_radius)

    def _pm(self, audio: np.ndarray, frames: int, _hop: int, _radius: int) -> np.ndarray:
        import parselmouth
        pitch = parselmouth.Sound(audio.astype(np.float64), SAMPLE_RATE).to_pitch_ac(
            time_step=HOP / SAMPLE_RATE, voicing_threshold=0.6, pitch_floor=F0_MIN, pitch_ceiling=F0_MAX)
        return fit_frames(pitch.selected_array["frequency"], frames)

    def _world(self, audio: np.ndarray, frames: int, radius: int, method: str) -> np.ndarray:
        import pyworld
        from scipy.signal import medfilt
        x = audio.astype(np.float64)
        track = pyworld.harvest if method == "harvest" else pyworld.dio
        f0, times = track(x, SAMPLE_RATE, f0_floor=F0_MIN, f0_ceil=F0_MAX, frame_period=1000 * HOP / SAMPLE_RATE)
        f0 = pyworld.stonemask(x, f0, times, SAMPLE_RATE)
        if radius >= 3:  # as AllTalk: a 3-point median against jitter and breathiness
            f0 = medfilt(f0, 3)
        return fit_frames(f0, frames)

    def _harvest(self, audio: np.ndarray, frames: int, _hop: int, radius: int) -> np.ndarray:
        return self._world(audio, frames, radius, "harvest")

    def _dio(self, audio: np.ndarray, frames: int, _hop: int, radius: int) -> np.ndarray:
        return self._world(audio, frames, radius, "dio")

    def _crepe_model(self, audio: np.ndarray, frames: int, hop: int, model: str) -> np.ndarray:
        import torchcrepe
        x = torch.from_numpy(audio.astype(np.float32))[None].to(self.device)
        f0, periodicity = torchcrepe.predict(x, SAMPLE_RATE, hop, F0_MIN, F0_MAX, model, batch_size=512,
                                             device=self.device, return_periodicity=True, pad=True)
        periodicity = torchcrepe.filter.median(periodicity, 3)
        f0 = torchcrepe.filter.mean(f0, 3)
        f0[periodicity < 0.1] = 0
        return resample_contour(f0[0].cpu().numpy(), frames)

    def _crepe(self, audio: np.ndarray, frames: int, hop: int, _radius: int) -> np.ndarray:
        return self._crepe_model(audio, frames, hop, "full")

    def _crepe_tiny(self, audio: np.ndarray, frames: int, hop: int, _radius: int) -> np.ndarray:
        return self._crepe_model(audio, frames, hop, "tiny")

    def _fcpe(self, audio: np.ndarray, frames: int, _hop: int, _radius: int) -> np.ndarray:
        if self._fcpe_model is None:
            import torchfcpe
            self._fcpe_model = torchfcpe.spawn_bundled_infer_model(device=str(self.device))
        x = torch.from_numpy(audio.astype(np.float32))[None, :, None].to(self.device)
        with torch.inference_mode():
            f0 = self._fcpe_model.infer(x, sr=SAMPLE_RATE, decoder_mode="local_argmax", threshold=0.006,
                                  f0_min=F0_MIN, f0_max=F0_MAX, interp_uv=False,
                                  output_interp_target_length=frames)
        return fit_frames(f0[0, :, 0].cpu().numpy(), frames)

    def _rmvpe(self, audio: np.ndarray, frames: int, _hop: int, _radius: int) -> np.ndarray:
        if self._rmvpe_model is None:
            path = self.base_dir / "rmvpe.pt"
            if not path.is_file():
                raise MissingWeights("rmvpe needs models/rvc_base/rmvpe.pt; choose fcpe, crepe, harvest, dio or pm")
            from .rmvpe import RmvpeTracker
            self._rmvpe_model = RmvpeTracker(path, self.device)
        return fit_frames(self._rmvpe_model.f0(audio), frames)


def coarse_pitch(f0: np.ndarray) -> np.ndarray:
    """f0 in Hz -> the 1..255 mel-scale bins pitch-guided voices embed (0 Hz -> 1)."""
    mel_min, mel_max = (1127 * np.log(1 + f / 700) for f in (F0_MIN, F0_MAX))
    mel = 1127 * np.log(1 + f0 / 700)
    mel = np.where(mel > 0, (mel - mel_min) * 254 / (mel_max - mel_min) + 1, mel)
    return np.rint(np.clip(mel, 1, 255)).astype(np.int64)
