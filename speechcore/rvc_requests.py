"""RVC requests as the core and the RVC replicas share them: what to convert with
(ConversionRequest and its checks), the errors, and how the core reaches the converter
(ConversionClient; the ingress implements it over the `rvc` deployment, tests in process).
No torch, no Ray and no settings files here."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from .audio.pcm import PcmChunk
from .engine_types import EngineError, SynthesisRequest
from .safe_paths import unsafe_reason

# Pitch trackers: WORLD (harvest, dio), Praat (pm), torchcrepe (crepe, crepe-tiny), torchfcpe (fcpe)
# need no downloaded weights; rmvpe needs models/rvc_base/rmvpe.pt. `hybrid[a+b]` is the median of
# members from crepe, crepe-tiny, rmvpe and fcpe.
F0_METHODS = ("pm", "harvest", "dio", "crepe", "crepe-tiny", "fcpe", "rmvpe")
HYBRID_MEMBERS = ("crepe", "crepe-tiny", "rmvpe", "fcpe")
_HYBRID = re.compile(r"hybrid\[([a-z+-]+)\]")
EMBEDDERS = ("hubert", "contentvec")
_RVC_OFF = ("disabled", "disable")


def rvc_voice_off(value: str) -> bool:
    """Whether an RVC voice field means "no conversion" (AllTalk's `Disabled`, any case)."""
    return value.strip().lower() in _RVC_OFF


def hybrid_members(method: str) -> list[str] | None:
    """The members of `hybrid[a+b...]`, or None when `method` is not a hybrid."""
    match = _HYBRID.fullmatch(method)
    return match.group(1).split("+") if match else None


def f0_method_problem(method: str) -> str | None:
    members = hybrid_members(method)
    if members is None:
        return None if method in F0_METHODS else f"must be one of {', '.join(F0_METHODS)} or hybrid[a+b]"
    if len(members) < 2 or any(m not in HYBRID_MEMBERS for m in members):
        return f"a hybrid combines two or more of {', '.join(HYBRID_MEMBERS)}, e.g. hybrid[rmvpe+fcpe]"
    return None


class InvalidConversion(ValueError):
    """The RVC settings of a request cannot be used (a client error: 400)."""


class VoiceConversionError(EngineError):
    """Conversion failed inside the converter."""


class RvcModelMissing(VoiceConversionError):
    """The RVC voice model does not exist (a client error: 404)."""


class RvcUnavailable(VoiceConversionError):
    """No converter runs here (503)."""


@dataclass(frozen=True)
class ConversionRequest:
    """One RVC conversion: the voice model (relative to models/rvc_voices) and the settings of §9.1."""

    model: str
    pitch: int = 0
    f0_method: str = "fcpe"
    index_rate: float = 0.75
    filter_radius: int = 3
    rms_mix_rate: float = 1.0
    protect: float = 0.5
    hop_length: int = 130
    embedder: str = "hubert"
    training_data_size: int = 45000

    def problems(self) -> list[str]:
        """What is wrong with the request, in words (empty when it can run)."""
        found = []
        reason = unsafe_reason(self.model)
        if reason:
            found.append(f"RVC model {self.model!r} {reason}")
        elif not self.model.endswith(".pth"):
            found.append(f"RVC model {self.model!r} must be a .pth file inside models/rvc_voices")
        problem = f0_method_problem(self.f0_method)
        if problem:
            found.append(f"f0 method {self.f0_method!r}: {problem}")
        if self.embedder not in EMBEDDERS:
            found.append(f"embedder {self.embedder!r} must be one of {', '.join(EMBEDDERS)}")
        if not 0 <= self.index_rate <= 1:
            found.append("index_rate must be between 0 and 1")
        if not 0 <= self.rms_mix_rate <= 1:
            found.append("rms_mix_rate must be between 0 and 1")
        if not 0 <= self.protect <= 0.5:
            found.append("protect must be between 0 and 0.5")
        if not 1 <= self.hop_length <= 512:
            found.append("hop_length must be between 1 and 512")
        if not -48 <= self.pitch <= 48:
            found.append("pitch must be between -48 and 48 semitones")
        return found


class ConversionClient(Protocol):
    def convert_synthesis(self, engine: str, request: SynthesisRequest,
                          conversion: ConversionRequest) -> AsyncIterator[PcmChunk]:
        """The engine's audio for `request`, converted chunk by chunk, in order. The converter
        consumes the engine stream itself."""
        ...

    async def convert_audio(self, audio: PcmChunk, conversion: ConversionRequest) -> PcmChunk:
        """One piece of audio converted whole (voice2rvc)."""
        ...

    async def is_serving(self) -> bool:
        ...

    async def check_voice_files(self, files: list[str]) -> None:
        """Asks a converter replica whether uploaded files (paths under the server root: a `.pth`,
        then an optional `.index`) make a voice; raises VoiceFilesRefused with the reason when not."""
        ...


@dataclass(frozen=True)
class ConvertedSource:
    """An engine's audio passed through voice conversion (an AudioSource)."""

    converter: ConversionClient
    engine: str
    conversion: ConversionRequest

    def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        return self.converter.convert_synthesis(self.engine, request, self.conversion)
