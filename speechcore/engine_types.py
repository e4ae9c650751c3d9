"""Values and errors shared by engines and the ingress. They cross deployment handles, so they are
plain dataclasses and exception classes that both sides can import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SynthesisRequest:
    """One piece of text to speak with one voice; engines use the knobs they support."""

    text: str
    voice: str
    language: str = "en"
    speed: float = 1.0
    temperature: float = 0.75
    repetition_penalty: float = 10.0
    pitch: float = 0.0
    top_k: int = 50
    """XTTS sampling (coqui's defaults); not on the wire: set by benchmarks and tests (1: deterministic)."""
    top_p: float = 0.85
    background: bool = False
    """Work no one is waiting on (a job's line): an engine replica that takes turns serves
    interactive requests first."""


DeviceSetting = Literal["auto", "cpu", "cuda"]
"""A replica's `device` setting (engines/devices.py says what each one does)."""


@dataclass(frozen=True)
class EngineOptions:
    """Knobs shared by engines; each engine uses the ones that apply to it. The defaults here are the
    ones an engine application's args (EngineArgs) take too."""

    threads: int = 1
    """CPU threads one synthesis may use (onnxruntime intra-op threads for Piper)."""

    device: str = "cpu"
    """`cpu` or `cuda`: chosen explicitly, never guessed from what the process can see."""

    gpu_share: float = 0.0
    """The fraction of one GPU this replica was given (caps the CUDA memory it may take)."""

    parallel_steps: int = 1
    """How many synthesis steps the replica runs at once: concurrent steps share `threads`."""

    max_batch: int = 1
    """For engines that batch (`batches = True`): requests that share each decoding step."""

    max_phonemes_per_step: int = 200
    """Piper: the most phonemes one model run takes; longer sentences are spoken in pieces."""


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine really does (the `*_capable` keys of `/api/currentsettings`)."""

    streaming: bool = False
    multivoice: bool = True
    multimodel: bool = True
    languages: bool = False
    generationspeed: bool = False
    temperature: bool = False
    repetitionpenalty: bool = False
    pitch: bool = False
    lowvram: bool = False
    deepspeed: bool = False
    deepspeed_available: bool = False
    cuda: bool = False
    """The replica runs on a GPU (LowVRAM and DeepSpeed only apply then)."""


@dataclass(frozen=True)
class EngineInfo:
    """An engine replica's answer to "what are you": identity, models, voices, capabilities."""

    engine: str
    manufacturer_name: str
    audio_format: str
    models: list[str]
    current_model: str | None
    voices: list[str]
    default_voice: str
    capabilities: EngineCapabilities = field(default_factory=EngineCapabilities)
    deepspeed_enabled: bool = False
    """What the replica runs with now (not what a settings file asks for)."""
    lowvram_enabled: bool = False
    voice_affinity: bool = True
    """Whether callers should route by voice (the engine application's `voice_affinity`)."""


class EngineError(RuntimeError):
    """Synthesis failed inside the engine."""


class UnknownVoice(EngineError):
    """The requested voice does not exist for this engine (a client error)."""


class UnsupportedLanguage(EngineError):
    """The engine cannot speak the requested language (a client error)."""


class UnknownModel(EngineError):
    """The requested model does not exist for this engine (a client error)."""


class VoiceFilesRefused(EngineError):
    """Uploaded voice files the engine cannot use (a client error: the reason says why)."""
