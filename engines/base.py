"""The base class every engine derives from."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

from speechcore.audio.pcm import PcmChunk
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import EngineInfo, SynthesisRequest, UnknownModel, VoiceFilesRefused
from speechcore.engine_types import EngineOptions as EngineOptions  # engines are built with it

from .devices import torch_sees_cuda

StepTimer = Callable[[], AbstractContextManager[object]]
"""Times one synthesis step while it runs (the replica's health check looks for steps that hang)."""


class SpeechStream(Protocol):
    """What `synthesize` returns, for every engine: chunks in order, computed as they are asked for
    (or, for an engine that batches, by the engine's own thread; next() then waits for them), and
    `close()` to stop it between two steps."""

    def __iter__(self) -> Iterator[PcmChunk]: ...

    def __next__(self) -> PcmChunk: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StepHooks:
    """How the host that serves an engine takes part in the engine's steps; given to the engine
    when it is created (an engine uses the hooks that apply to it)."""

    interactive_steps: Callable[[], int] = lambda: 1
    """How many steps of interactive requests the host runs now (a job's lines are not counted):
    Piper picks its threading by it."""

    time_step: StepTimer = contextlib.nullcontext
    """For an engine that batches: times each of its own steps (the host's health check looks for
    steps that hang)."""

    on_batch: Callable[[int], None] = lambda rows: None
    """For an engine that batches: told how many rows each of its steps ran."""

    on_row_left: Callable[[], None] = lambda: None
    """For an engine that batches: told when a row leaves before its sentence ended (its request
    went away or was stopped), so that the steps it no longer takes can be seen."""


NO_HOOKS = StepHooks()
"""For an engine used on its own (a script, a test): one interactive step at a time, untimed."""


class TTSEngine(ABC):
    """A loaded engine. Voices are loaded separately so that a server can cache them per replica
    (for Piper a voice is an ONNX session; for XTTS conditioning latents). An engine implements
    the abstract methods; the others have defaults that say what an engine without the feature does.

    An engine that `batches` computes all its concurrent requests together, in a thread of its own:
    the host hands it every request and only waits for chunks. The others compute a step when the
    host asks for the next chunk, and the host's requests take turns at that."""

    name: ClassVar[str]
    batches: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def create(cls, paths: ServerPaths, options: EngineOptions, hooks: StepHooks = NO_HOOKS) -> Self: ...

    @classmethod
    def sees_cuda(cls) -> bool:
        """Whether the engine can run on CUDA in this process (torch's view; asked only for a replica
        with a GPU share and `device: auto`)."""
        return torch_sees_cuda()

    @abstractmethod
    def info(self) -> EngineInfo:
        """Identity, models, voices (scanned now) and capabilities."""

    @abstractmethod
    def load_voice(self, voice: str) -> Any:
        """Loads a voice listed by info(); raises UnknownVoice otherwise."""

    @abstractmethod
    def synthesize(self, voice: Any, request: SynthesisRequest) -> SpeechStream:
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

    def voice_version(self, voice: str) -> object:
        """Something that changes when the files of `voice` change (a replaced upload), so that a
        replica that loaded it loads it again; raises UnknownVoice when the voice is gone.
        Default: a voice never changes (it is not made of files)."""
        return None

    def check_voice_files(self, files: list[Path]) -> None:
        """Raises VoiceFilesRefused unless `files` (an upload, before it is listed) make a voice
        this engine loads. Default: the engine takes no uploaded voices."""
        raise VoiceFilesRefused(f"the {self.name} engine takes no uploaded voice files")
