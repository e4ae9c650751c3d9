"""The engine protocol every backend implements, and the options every engine is built with."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from speechcore.audio.pcm import PcmChunk
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import EngineInfo, SynthesisRequest


@dataclass(frozen=True)
class EngineOptions:
    """Knobs shared by engines; each engine uses the ones that apply to it."""

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


class TTSEngine(Protocol):
    """A loaded engine. Voices are loaded separately so that a server can cache them per replica
    (for Piper a voice is an ONNX session; for XTTS conditioning latents).

    An engine that `batches` computes all its concurrent requests together: its `synthesize`
    returns at once a closable iterator that blocks until the next chunk, and the server hands it
    every request instead of taking turns. The others are iterated one step at a time."""

    name: str
    batches: bool

    @classmethod
    def create(cls, paths: ServerPaths, options: EngineOptions) -> "TTSEngine": ...

    def info(self) -> EngineInfo:
        """Identity, models, voices (scanned now) and capabilities."""
        ...

    def load_voice(self, voice: str) -> Any:
        """Loads a voice listed by info(); raises UnknownVoice otherwise."""
        ...

    def synthesize(self, voice: Any, request: SynthesisRequest) -> Iterator[PcmChunk]:
        """Speaks request.text with a loaded voice, one chunk per sentence or smaller."""
        ...

    def configure(self, deepspeed: bool, lowvram: bool) -> None:
        """Applies DeepSpeed and LowVRAM where the engine and the device support them (a no-op
        otherwise); info() reports what is in effect."""
        ...

    def check_model(self, model: str) -> None:
        """Raises what select_model(model) would (UnknownModel, EngineError) without switching."""
        ...

    def select_model(self, model: str | None) -> None:
        """Loads one of info().models (None: the first), then serves it; raises UnknownModel,
        or EngineError when loading fails (the previous model keeps serving)."""
        ...
