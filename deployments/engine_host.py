"""EngineHost: one engine served to concurrent requests, without Ray. The Serve deployment
(engine_server.py) wraps it with what only Serve has (replica resources, multiplexed voices,
metrics, cluster-wide signals), and the in-process tests use it as it is.

Synthesis runs off the event loop, so the host keeps answering status calls while it speaks. An
engine that batches (XTTS) gets every concurrent request at once and computes them together in its
own thread; for the others, requests take turns step by step (`parallel_steps` at once, live
requests before a job's lines: StepTurns), so a replica's threads are never oversubscribed and a
short request is not stuck behind a long one. Steps are timed (StepWatch) so that a health check
tells a hung engine from a busy one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engines.base import SpeechStream, StepHooks, TTSEngine
from speechcore.audio.pcm import PcmChunk
from speechcore.cancellation import GenerationStopped
from speechcore.config.app_args import EngineUserConfig
from speechcore.engine_types import EngineError, EngineInfo, SynthesisRequest

from .step_turns import StepTurns
from .step_watch import StepWatch
from .voice_cache import LoadedVoice, fresh_voice, load_held

_DONE = object()


class HostMetrics(Protocol):
    def waited(self, seconds: float) -> None:
        """A request waited this long for its first step."""

    def batch_ran(self, rows: int) -> None:
        """A batching engine's step ran this many rows."""

    def row_left(self) -> None:
        """A row left a batching engine's steps before its sentence ended."""


class StopEpochs(Protocol):
    """Stop requests as epochs that only grow: a generation that started before the newest one stops."""

    def latest(self) -> int:
        """The newest epoch seen (cheap: read between chunks)."""

    async def now(self) -> int:
        """The epoch as it is now (read once, when a generation starts)."""


class _NoMetrics:
    def waited(self, seconds: float) -> None:
        return None

    def batch_ran(self, rows: int) -> None:
        return None

    def row_left(self) -> None:
        return None


class NoStops:
    """A host that no one stops from outside (its callers cancel their own generations)."""

    def latest(self) -> int:
        return 0

    async def now(self) -> int:
        return 0


@dataclass(frozen=True)
class Reconfigured:
    """What applying a user_config did."""

    info: EngineInfo
    error: str | None
    """Why the model (or an option) could not be applied; the current one keeps serving."""
    changed: bool
    """The model, DeepSpeed or LowVRAM in effect changed."""
    seconds: float


class EngineHost:
    def __init__(self, create: Callable[[StepHooks], TTSEngine], parallel_steps: int = 1, max_batch: int = 1,
                 metrics: HostMetrics | None = None, stops: StopEpochs | None = None):
        """`create` builds the engine with the hooks through which it takes part in the host's steps."""
        self.metrics = metrics or _NoMetrics()
        self.stops = stops or NoStops()
        self.watch = StepWatch()
        self._turns = StepTurns(parallel_steps)
        self.engine = create(StepHooks(interactive_steps=lambda: self._turns.interactive_running,
                                       time_step=self.watch.step, on_batch=self.metrics.batch_ran,
                                       on_row_left=self.metrics.row_left))
        self._batches = getattr(self.engine, "batches", False)
        self._waiters = ThreadPoolExecutor(max_workers=2 * max_batch, thread_name_prefix="chunk-wait") \
            if self._batches else None

    # ----- what the engine is

    async def describe(self) -> EngineInfo:
        return await asyncio.to_thread(self.engine.info)

    async def check_model(self, model: str) -> None:
        await asyncio.to_thread(self.engine.check_model, model)

    async def check_voice_files(self, files: list[Path]) -> None:
        """Whether an upload's files make a voice this engine loads; VoiceFilesRefused says why not."""
        await asyncio.to_thread(self.engine.check_voice_files, files)

    def check_health(self, step_timeout_s: float) -> None:
        """Raises when a synthesis step has run longer than `step_timeout_s` (a hung engine)."""
        self.watch.check(step_timeout_s)

    async def reconfigure(self, config: EngineUserConfig) -> Reconfigured:
        """Applies DeepSpeed and LowVRAM and selects the model, off the event loop (requests keep
        being served; the model is swapped in at once). A model that fails to load leaves the
        current one serving, and the answer says why."""
        before = await self.describe()
        started, error = time.perf_counter(), None
        try:
            await asyncio.to_thread(self.engine.configure, config.deepspeed, config.lowvram)
            await asyncio.to_thread(self.engine.select_model, config.model)
        except EngineError as exc:
            error = str(exc)
        after = await self.describe()
        changed = (after.current_model, after.deepspeed_enabled, after.lowvram_enabled) != \
            (before.current_model, before.deepspeed_enabled, before.lowvram_enabled)
        return Reconfigured(after, error, changed, time.perf_counter() - started)

    # ----- voices

    async def load_voice(self, name: str) -> LoadedVoice:
        """The voice loaded now, with the version of its files (to keep in a cache)."""
        return await load_held(name, self.engine.voice_version, self.engine.load_voice)

    async def fresh_voice(self, held: LoadedVoice, name: str) -> Any:
        """A kept voice as its files are now (a replaced upload is loaded again)."""
        return await fresh_voice(held, name, self.engine.voice_version, self.engine.load_voice)

    # ----- speech

    async def synthesize(self, voice: Any, request: SynthesisRequest, epoch: int | None = None
                         ) -> AsyncIterator[PcmChunk]:
        """Streams the chunks of one request. Closing the stream (a client gone, a cancelled call)
        ends it after the chunk being computed (for a batching engine: after the step); so does a
        stop request, once `stops` has seen it. `epoch`: the stop epoch the generation starts in,
        when the caller read it already (else it is read here)."""
        started = await self.stops.now() if epoch is None else epoch
        steps = self._batched_steps if self._batches else self._turn_steps
        async with contextlib.aclosing(steps(voice, request)) as chunks:
            async for chunk in chunks:
                if self.stops.latest() > started:
                    raise GenerationStopped()
                yield chunk

    def _next(self, chunks: SpeechStream) -> Any:
        """One synthesis step, in a worker thread (timed there: see StepWatch)."""
        with self.watch.step():
            return next(chunks, _DONE)

    async def _turn_steps(self, voice: Any, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        """The chunks, one step at a time in turn with the host's other requests."""
        arrived = time.perf_counter()  # queue wait: from here (voice ready) to the first step's turn
        chunks = self.engine.synthesize(voice, request)
        waiting = True
        try:
            async with self._turns.generation(request.background):
                while True:
                    async with self._turns.turn(request.background):
                        if waiting:
                            self.metrics.waited(time.perf_counter() - arrived)
                            waiting = False
                        chunk = await asyncio.to_thread(self._next, chunks)
                    if chunk is _DONE:
                        return
                    yield chunk
        finally:
            # After a cancellation the worker thread may still be inside next(); the generator
            # then cannot be closed here and is dropped when that call returns.
            with contextlib.suppress(ValueError):
                chunks.close()

    async def _batched_steps(self, voice: Any, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        """The chunks as a batching engine computes them."""
        stream = await asyncio.to_thread(self.engine.synthesize, voice, request)
        loop, waiting = asyncio.get_running_loop(), True
        try:
            while True:
                chunk = await loop.run_in_executor(self._waiters, next, stream, _DONE)
                wait_s = getattr(stream, "queue_wait_s", None)
                if waiting and wait_s is not None:
                    self.metrics.waited(wait_s)
                    waiting = False
                if chunk is _DONE:
                    return
                yield chunk
        finally:
            stream.close()  # the row leaves the batch before the next step
