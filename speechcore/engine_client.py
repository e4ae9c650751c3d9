"""EngineClient: how the generation service reaches an engine. The ingress implements it over
Serve deployment handles; tests implement it over an in-process engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from .audio.pcm import PcmChunk
from .engine_types import EngineInfo, SynthesisRequest


class EngineUnavailable(RuntimeError):
    """No replica of the engine can answer right now."""


class ReplicaLost(EngineUnavailable):
    """The replica serving a request died (another one may serve it again)."""


class EngineTimeout(EngineUnavailable):
    """The engine sent nothing for longer than the ingress waits (a hung or unreachable replica)."""


class ModelChangeInProgress(RuntimeError):
    """Another model change of this engine is rolling out."""


class EngineClient(Protocol):
    async def describe(self) -> EngineInfo:
        """Identity, models, voices and capabilities; raises EngineUnavailable."""
        ...

    async def is_serving(self) -> bool:
        """Whether a replica can serve now (cheap; never waits behind a generation)."""
        ...

    def forget_description(self) -> None:
        """Drops a description kept for reuse: the next describe() asks a replica (voices changed)."""
        ...

    async def check_voice_files(self, files: list[str]) -> None:
        """Asks a replica whether uploaded files (paths under the server root) make a voice it
        loads; raises VoiceFilesRefused with the reason when they do not."""
        ...

    def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        """Audio for the request, in order, one chunk per sentence or smaller."""
        ...

    async def configure(self, options: dict[str, object]) -> None:
        """Rolls engine options (`deepspeed`, `lowvram`) out to every replica; raises EngineError."""
        ...

    async def select_model(self, model: str) -> None:
        """Makes every replica serve `model` and returns once they do; raises UnknownModel or
        EngineError (nothing changed), or ModelChangeInProgress."""
        ...
