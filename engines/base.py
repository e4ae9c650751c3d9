"""The base class every engine derives from, and the options every engine is built with."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from speechcore.audio.pcm import PcmChunk
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import EngineInfo, SynthesisRequest, UnknownModel, VoiceFilesRefused


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

    max_phonemes_per_step: int = 200
    """Piper: the most phonemes one model run takes; longer sentences are spoken in pieces."""


StepTimer = Callable[[], AbstractContextManager[object]]
"""Times one synthesis step while it runs (the replica's health check looks for steps that hang)."""


class TTSEngine(ABC):
    """A loaded engine. Voices are loaded separately so that a server can cache them per replica
    (for Piper a voice is an ONNX session; for XTTS conditioning latents). An engine implements
    the abstract methods; the others have defaults that say what an engine without the feature does.

    An engine that `batches` computes all its concurrent requests together: its `synthesize`
    returns at once a closable iterator that blocks until the next chunk, and the server hands it
    every request instead of taking turns. The others are iterated one step at a time."""

    name: ClassVar[str]
    batches: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def create(cls, paths: ServerPaths, options: EngineOptions) -> Self: ...

    @abstractmethod
    def info(self) -> EngineInfo:
        """Identity, models, voices (scanned now) and capabilities."""

    @abstractmethod
    def load_voice(self, voice: str) -> Any:
        """Loads a voice listed by info(); raises UnknownVoice otherwise."""

    @abstractmethod
    def synthesize(self, voice: Any, request: SynthesisRequest) -> Iterator[PcmChunk]:
        """Speaks request.text with a loaded voice, one chunk per sentence or smaller."""

    @abstractmethod
    def select_model(self, model: str | None) -> None:
        """Loads one of info().models (None: keeps the current one, or loads the first), then
        serves it; raises UnknownModel, or EngineError when loading fails (the previous model
        keeps serving)."""

    def check_model(self, model: str) -> None:
        """Raises what select_model(model) would (UnknownModel, EngineError) without switching.
        Default: the model must be listed."""
        models = self.info().models
        if model not in models:
            raise UnknownModel(f"{self.name} has the models {', '.join(models) or 'none'}; got {model!r}")

    def configure(self, deepspeed: bool, lowvram: bool) -> None:
        """Applies DeepSpeed and LowVRAM where the engine and the device support them; info()
        reports what is in effect. Default: neither applies."""
        return None

    def count_steps_with(self, concurrent_steps: Callable[[], int]) -> None:
        """How the replica tells how many interactive synthesis steps run at once (a job's background
        steps are not counted). Default: not needed."""
        return None

    def report_steps_to(self, time_step: StepTimer, on_step: Callable[[int], None]) -> None:
        """For an engine that batches (it runs its own steps): time each step with `time_step`
        and tell `on_step` how many rows it had. Default: nothing to report."""
        return None

    def voice_version(self, voice: str) -> object:
        """Something that changes when the files of `voice` change (a replaced upload), so that a
        replica that loaded it loads it again; raises UnknownVoice when the voice is gone.
        Default: a voice never changes (it is not made of files)."""
        return None

    def check_voice_files(self, files: list[Path]) -> None:
        """Raises VoiceFilesRefused unless `files` (an upload, before it is listed) make a voice
        this engine loads. Default: the engine takes no uploaded voices."""
        raise VoiceFilesRefused(f"the {self.name} engine takes no uploaded voice files")
