"""VoiceConversion: when a request's audio goes through RVC, with which settings, and the RVC
voices there are (the `rvc_settings` of confignew.json are the policy)."""

from __future__ import annotations

import os
from pathlib import Path

from .config.alltalk import RvcSettings
from .config.store import SettingsStore
from .rvc_requests import (
    ConversionClient,
    ConversionRequest,
    ConvertedSource,
    InvalidConversion,
    RvcUnavailable,
    rvc_voice_off,
)
from .safe_paths import unsafe_reason
from .synthesis import AudioSource


def conversion_request(
    settings: RvcSettings, model: str, pitch: float, f0_method: str | None = None
) -> ConversionRequest:
    """The request's model and pitch (fractions truncated toward zero, as AllTalk), the rest from
    `rvc_settings`."""
    return ConversionRequest(
        model=model,
        pitch=int(pitch),
        f0_method=f0_method or settings.f0method,
        index_rate=settings.index_rate,
        filter_radius=settings.filter_radius,
        rms_mix_rate=float(settings.rms_mix_rate),
        protect=settings.protect,
        hop_length=settings.hop_length,
        embedder=settings.embedder_model,
        training_data_size=settings.training_data_size,
    )


class VoiceConversion:
    def __init__(self, settings: SettingsStore, converter: ConversionClient | None):
        self.settings = settings
        self.converter = converter

    def request(self, rvc_voice: str, pitch: float, f0_method: str | None = None) -> ConversionRequest | None:
        """What to convert with, or None when RVC is off globally or for this voice. Raises
        InvalidConversion for unusable settings, RvcUnavailable when no converter runs here."""
        rvc = self.settings.config.rvc_settings
        if rvc_voice_off(rvc_voice):
            return None
        if reason := unsafe_reason(rvc_voice):  # refused even while RVC is off: never a silent pass
            raise InvalidConversion(f"RVC voice {rvc_voice!r} {reason}")
        if not rvc.rvc_enabled:
            return None
        request = conversion_request(rvc, rvc_voice, pitch, f0_method)
        if problems := request.problems():
            raise InvalidConversion("; ".join(problems))
        if self.converter is None:
            raise RvcUnavailable(
                "RVC is enabled but no RVC converter runs on this server (install the rvc extra "
                "and put a voice in models/rvc_voices, or deploy the rvc application)"
            )
        return request

    def source(self, engine_client: AudioSource, engine: str, conversion: ConversionRequest | None) -> AudioSource:
        """The engine, or the engine followed by the converter."""
        if conversion is None:
            return engine_client
        assert self.converter is not None  # request() returns a conversion only with a converter
        return ConvertedSource(self.converter, engine, conversion)

    def voices(self) -> list[str]:
        """`Disabled`, then every `.pth` under models/rvc_voices (relative, sorted) when RVC is on."""
        folder = self.settings.paths.rvc_voices
        if not self.settings.config.rvc_settings.rvc_enabled or not folder.is_dir():
            return ["Disabled"]
        found = []
        for dirpath, _dirs, files in os.walk(folder):  # does not follow symlinked folders
            for name in files:
                if name.endswith(".pth"):
                    found.append((Path(dirpath) / name).relative_to(folder).as_posix())
        return ["Disabled", *sorted(found)]
