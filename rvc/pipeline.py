"""VoiceConverter: audio in any rate -> the RVC voice at the voice model's rate.

Steps (at 16 kHz): high-pass at 48 Hz, reflect-pad, content features from the embedder, optional
retrieval blend from the voice's index, f0 from the chosen tracker shifted by the pitch in
semitones, protection of unvoiced frames, synthesis, padding trimmed, optional RMS envelope mix,
peak limit. Voice models, indexes, embedders and trackers are cached per converter."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import torch
from scipy.signal import butter, filtfilt, resample_poly

from speechcore.engine_types import VoiceFilesRefused
from speechcore.rvc_requests import ConversionRequest, RvcModelMissing, VoiceConversionError
from speechcore.safe_paths import UnsafeName, resolve_inside
from speechcore.voices.layout import file_versions

from .checkpoint import read_voice_checkpoint
from .embedder import ContentEmbedder, load_embedder
from .pitch import HOP, SAMPLE_RATE, PitchTracker, coarse_pitch
from .retrieval import FeatureIndex
from .synthesizer import Synthesizer

PAD_FRAMES = 50  # 0.5 s of reflected context on each side
MIN_SAMPLES = 400  # the embedder's first frame
_HIGH_PASS = butter(5, 48, btype="high", fs=SAMPLE_RATE)


@dataclass
class VoiceModel:
    name: str
    synthesizer: Synthesizer
    index: FeatureIndex | None
    version: str

    @property
    def sample_rate(self) -> int:
        return self.synthesizer.config.sample_rate

    @property
    def pitch_guided(self) -> bool:
        return self.synthesizer.config.f0


def resample_audio(audio: np.ndarray, source: int, target: int) -> np.ndarray:
    if source == target:
        return audio.astype(np.float32)
    factor = gcd(source, target)
    return resample_poly(audio, target // factor, source // factor).astype(np.float32)


def frame_rms(audio: np.ndarray, frame: int, frames: int) -> np.ndarray:
    """RMS over windows of `frame` samples (hop frame/2), stretched to `frames` points."""
    hop = max(frame // 2, 1)
    padded = np.pad(audio, (frame // 2, frame // 2))
    starts = np.arange(0, max(len(padded) - frame, 0) + 1, hop)
    rms = np.array([np.sqrt(np.mean(padded[s:s + frame] ** 2)) for s in starts], dtype=np.float32)
    if len(rms) < 2:
        return np.full(frames, rms[0] if len(rms) else 0.0, dtype=np.float32)
    return np.interp(np.linspace(0, len(rms) - 1, frames), np.arange(len(rms)), rms).astype(np.float32)


def mix_rms(source: np.ndarray, source_rate: int, converted: np.ndarray, rate: int, mix: float) -> np.ndarray:
    """mix = 1 keeps the converted loudness envelope; lower values move it toward the source's."""
    if mix >= 1:
        return converted
    src = frame_rms(source, source_rate, len(converted))  # 1 s windows, hop 0.5 s
    out = np.maximum(frame_rms(converted, rate, len(converted)), 1e-6)
    return converted * (np.maximum(src, 1e-6) ** (1 - mix)) * (out ** (mix - 1))


def index_beside(model: Path) -> Path | None:
    """The voice's feature index: the only `.index` in the model's folder (none, or several: none)."""
    indexes = sorted(model.parent.glob("*.index"))
    return indexes[0] if len(indexes) == 1 else None


def load_voice_files(name: str, model: Path, index_file: Path | None, device: torch.device) -> VoiceModel:
    """A voice from its model file (read without running any code it may carry) and optional
    index; VoiceConversionError (UnsafeCheckpoint among them) when they do not make a voice."""
    checkpoint = read_voice_checkpoint(model)
    try:
        synthesizer = Synthesizer.from_checkpoint(checkpoint).to(device)
    except (RuntimeError, ValueError, KeyError) as exc:  # weights that do not fit the layers their config names
        raise VoiceConversionError(f"{model.name}: its weights do not fit its config ({exc})") from None
    index = FeatureIndex.read(index_file) if index_file is not None else None
    if index is not None and index.width != checkpoint.config.content_dim:
        raise VoiceConversionError(f"{index_file.name} holds {index.width}-wide features but the voice "
                                   f"expects {checkpoint.config.content_dim}")
    return VoiceModel(name, synthesizer, index, checkpoint.version)


def check_voice_files(files: list[Path]) -> None:
    """An uploaded voice (the `.pth`, then an optional `.index`) loads as a voice, its checkpoint
    read without running code; VoiceFilesRefused says why not."""
    try:
        load_voice_files(files[0].stem, files[0], (files[1:] or [None])[0], torch.device("cpu"))
    except VoiceConversionError as exc:
        raise VoiceFilesRefused(str(exc)) from None


class VoiceConverter:
    """Converts audio with RVC voice models found under `voices_dir` (models/rvc_voices), using
    base weights from `base_dir` (models/rvc_base). Thread-safe for concurrent conversions."""

    def __init__(self, voices_dir: Path, base_dir: Path, device: str = "cpu"):
        self.voices_dir, self.base_dir = voices_dir, base_dir
        self.device = torch.device(device)
        self.pitch = PitchTracker(base_dir, self.device)
        self._embedders: dict[str, ContentEmbedder] = {}
        self._lock = threading.Lock()

    def model_path(self, name: str) -> Path:
        try:
            path = resolve_inside(self.voices_dir, name)
        except UnsafeName as exc:
            raise VoiceConversionError(f"RVC model {exc}") from None
        if path.suffix != ".pth" or not path.is_file():
            raise RvcModelMissing(f"RVC model not found: models/rvc_voices/{name}")
        return path

    def load_voice(self, name: str) -> VoiceModel:
        """Reads the voice model and the only `.index` beside it (none, or several: no index)."""
        path = self.model_path(name)
        return load_voice_files(name, path, index_beside(path), self.device)

    def voice_version(self, name: str) -> tuple[tuple[int, int, int], ...]:
        """Changes when the model or its index is replaced (a replica then loads it again)."""
        path = self.model_path(name)
        return file_versions([path, *filter(None, [index_beside(path)])])

    def embedder(self, name: str) -> ContentEmbedder:
        with self._lock:
            if name not in self._embedders:
                self._embedders[name] = load_embedder(self.base_dir, name).to(self.device)
            return self._embedders[name]

    def convert(self, voice: VoiceModel, audio: np.ndarray, sample_rate: int,
                request: ConversionRequest) -> np.ndarray:
        """Float mono `audio` at `sample_rate` -> float mono audio at `voice.sample_rate`."""
        source = resample_audio(audio, sample_rate, SAMPLE_RATE)
        if len(source) < MIN_SAMPLES:  # shorter than one content frame: nothing to convert
            return np.zeros(len(source) * voice.sample_rate // SAMPLE_RATE, dtype=np.float32)
        filtered = filtfilt(*_HIGH_PASS, source) if len(source) > 3 * len(_HIGH_PASS[0]) else source
        pad_frames = min(PAD_FRAMES, (len(filtered) - 1) // HOP)
        padded = np.clip(np.pad(filtered, pad_frames * HOP, mode="reflect"), -1.0, 1.0).astype(np.float32)
        frames = len(padded) // HOP
        config = voice.synthesizer.config

        content = self.embedder(request.embedder).features(padded, config.content_dim, self.device)[0]
        original = content
        if voice.index is not None and request.index_rate > 0:
            blended = voice.index.limited(request.training_data_size).blend(content.cpu().numpy(), request.index_rate)
            content = torch.from_numpy(blended).to(self.device)
        content = content.repeat_interleave(2, dim=0)[:frames]  # 50 -> 100 frames per second
        original = original.repeat_interleave(2, dim=0)[:frames]
        frames = content.shape[0]

        f0 = pitch = None
        if config.f0:
            contour = self.pitch.f0(request.f0_method, padded, frames, request.hop_length, request.filter_radius)
            contour = contour * 2 ** (request.pitch / 12)
            if request.protect < 0.5:
                keep = torch.from_numpy(np.where(contour > 0, 1.0, request.protect).astype(np.float32))[:, None]
                content = content * keep.to(self.device) + original * (1 - keep.to(self.device))
            f0 = torch.from_numpy(contour.astype(np.float32))[None].to(self.device)
            pitch = torch.from_numpy(coarse_pitch(contour))[None].to(self.device)

        with torch.inference_mode():
            out = voice.synthesizer.infer(content[None].float(), pitch, f0).cpu().numpy().astype(np.float32)
        trim = pad_frames * voice.synthesizer.dec.upsample
        out = out[trim:len(out) - trim] if len(out) > 2 * trim else out
        out = mix_rms(source, SAMPLE_RATE, out, voice.sample_rate, request.rms_mix_rate)
        peak = float(np.max(np.abs(out))) if out.size else 0.0
        return (out / peak * 0.99 if peak > 0.99 else out).astype(np.float32)
