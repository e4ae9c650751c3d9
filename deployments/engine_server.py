"""EngineServer: one engine replica. Voices are multiplexed (cached per replica, and with
`voice_affinity` requests for a voice are routed to replicas that have it loaded); synthesis
runs off the event loop so the replica keeps answering status calls while it speaks. An engine
that batches (XTTS) gets every concurrent request at once and computes them together, up to
`max_batch`; for the others concurrent requests take turns sentence by sentence
(`parallel_steps` at once), so a replica's threads are never oversubscribed and a short request
is not stuck behind a long one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from ray import serve

from engines.base import EngineOptions, TTSEngine
from engines.registry import load_engine_class
from speechcore.audio.pcm import PcmChunk
from speechcore.cancellation import GenerationStopped
from speechcore.config.app_args import EngineArgs, EngineUserConfig
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import EngineError, EngineInfo, SynthesisRequest
from speechcore.safe_paths import resolve_inside

from .cluster_signals import ClusterStopSignal, ReplicaReports
from .metrics import EngineMetrics
from .step_turns import StepTurns
from .step_watch import StepWatch
from .voice_cache import LoadedVoice, fresh_voice, load_held

_LOGGER = logging.getLogger("ray.serve")
MAX_VOICES_PER_REPLICA = 8
_DONE = object()


def _replica_options(args: EngineArgs) -> EngineOptions:
    """Device and GPU share from what Serve gave this replica (num_gpus in serve_config.yaml)."""
    gpu_share = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    device = args.device if args.device != "auto" else ("cuda" if gpu_share > 0 else "cpu")
    return EngineOptions(threads=args.threads, device=device, gpu_share=gpu_share, parallel_steps=args.parallel_steps,
                         max_batch=args.max_batch, max_phonemes_per_step=args.max_phonemes_per_step)


class EngineServer:
    def __init__(self, args: dict[str, Any], engine_cls: type[TTSEngine] | None = None):
        self.args = EngineArgs.model_validate(args)
        options = _replica_options(self.args)
        cls = engine_cls or load_engine_class(self.args.engine)
        self.metrics = EngineMetrics(self.args.engine)
        started = time.perf_counter()
        paths = ServerPaths.at(self.args.root)
        self.root = paths.root
        self.engine = cls.create(paths, options)
        self.stop_signal = ClusterStopSignal()
        self._reports = ReplicaReports()
        self._replica = serve.get_replica_context().replica_id
        self._steps = StepTurns(self.args.parallel_steps)  # requests take turns per step, interactive first
        self._watch = StepWatch()
        self._batches = self.engine.batches
        if self._batches:  # the engine times its batch steps; threads here only wait for chunks
            self.engine.report_steps_to(self._watch.step, self.metrics.batch_ran)
            self._waiters = ThreadPoolExecutor(max_workers=2 * self.args.max_batch, thread_name_prefix="chunk-wait")
        # Piper picks its threading by the interactive steps running (background ones take a share only).
        self.engine.count_steps_with(lambda: self._steps.interactive_running)
        # The first model loads here (the hooks above must be in place before it does).
        self.metrics.model_loaded(self.engine.info().current_model or "none", time.perf_counter() - started)
        _LOGGER.info("engine %s ready on %s with %d thread(s)", self.args.engine, options.device, options.threads)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Called by Serve with the deployment's user_config, at start and on every rollout. The
        model loads off the event loop (requests keep being served) and is swapped in at once. A
        model that fails to load leaves the current one serving, and the replica's report says
        so: the rollout that asked for it reads the reports and answers a failure."""
        config = EngineUserConfig.model_validate(user_config or {})
        before = await asyncio.to_thread(self.engine.info)
        started, error = time.perf_counter(), None
        try:
            await asyncio.to_thread(self.engine.configure, config.deepspeed, config.lowvram)
            await asyncio.to_thread(self.engine.select_model, config.model)
        except EngineError as exc:
            _LOGGER.error("keeping the current model: %s", exc)
            error = str(exc)
        await asyncio.to_thread(self._reports.publish, self._replica.deployment_id.app_name, self._replica.unique_id,
                                user_config or {}, error)
        after = await asyncio.to_thread(self.engine.info)
        if (after.current_model, after.deepspeed_enabled, after.lowvram_enabled) != \
                (before.current_model, before.deepspeed_enabled, before.lowvram_enabled):
            seconds = time.perf_counter() - started
            self.metrics.model_loaded(after.current_model or "none", seconds)
            _LOGGER.info("engine %s now serves model %s (loaded in %.1f s)", self.args.engine, after.current_model,
                         seconds)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # best effort: readers only look at running replicas
            self._reports.remove(self._replica.deployment_id.app_name, self._replica.unique_id)

    async def check_health(self) -> None:
        """Serve's periodic probe: a replica whose synthesis step never returns is replaced."""
        self._watch.check(self.args.step_timeout_s)

    async def check_model(self, model: str) -> None:
        await asyncio.to_thread(self.engine.check_model, model)

    async def describe(self) -> EngineInfo:
        info = await asyncio.to_thread(self.engine.info)
        return dataclasses.replace(info, voice_affinity=self.args.voice_affinity)

    async def check_voice_files(self, files: list[str]) -> None:
        """Whether an upload's files (paths under the server root) make a voice this engine loads;
        VoiceFilesRefused says why not."""
        await asyncio.to_thread(self.engine.check_voice_files, [resolve_inside(self.root, name) for name in files])

    @serve.multiplexed(max_num_models_per_replica=MAX_VOICES_PER_REPLICA)
    async def _loaded(self, voice: str) -> LoadedVoice:
        return await load_held(voice, self.engine.voice_version, self.engine.load_voice)

    async def _voice(self, voice: str) -> Any:
        """The voice as its files are now (a replaced upload is loaded again)."""
        return await fresh_voice(await self._loaded(voice), voice, self.engine.voice_version, self.engine.load_voice)

    def _next(self, chunks: Iterator[PcmChunk]) -> tuple[Any, int]:
        """One synthesis step, in a worker thread (timed there: see StepWatch)."""
        with self._watch.step():
            chunk = next(chunks, _DONE)
        return chunk, self.stop_signal.current()

    def _next_batched(self, chunks: Iterator[PcmChunk]) -> tuple[Any, int]:
        """Waits for a batching engine's next chunk (the engine's own thread computes it)."""
        return next(chunks, _DONE), self.stop_signal.current()

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        """Streams the chunks of one request. Cancelling the call (client gone) or a cluster-wide
        stop ends it after the chunk being computed (for a batching engine: after the step)."""
        started = await asyncio.to_thread(self.stop_signal.current)
        voice = await self._voice(request.voice)
        steps = self._batched_steps if self._batches else self._turn_steps
        async with contextlib.aclosing(steps(voice, request)) as chunks:
            async for chunk, epoch in chunks:
                if epoch != started:
                    raise GenerationStopped()
                if chunk is _DONE:
                    return
                yield chunk

    async def _turn_steps(self, voice: Any, request: SynthesisRequest) -> AsyncIterator[tuple[Any, int]]:
        """(chunk, stop epoch) pairs, one step at a time in turn with the replica's other requests
        (`parallel_steps` at once), ending with _DONE."""
        arrived = time.perf_counter()  # queue wait: from here (voice ready) to the first step's turn
        chunks = self.engine.synthesize(voice, request)
        waiting = True
        try:
            while True:
                async with self._steps.turn(request.background):
                    if waiting:
                        self.metrics.waited(time.perf_counter() - arrived)
                        waiting = False
                    step = await asyncio.to_thread(self._next, chunks)
                yield step
        finally:
            # After a cancellation the worker thread may still be inside next(); the generator
            # then cannot be closed here and is dropped when that call returns.
            with contextlib.suppress(ValueError):
                chunks.close()

    async def _batched_steps(self, voice: Any, request: SynthesisRequest) -> AsyncIterator[tuple[Any, int]]:
        """(chunk, stop epoch) pairs as a batching engine computes them, ending with _DONE."""
        stream = await asyncio.to_thread(self.engine.synthesize, voice, request)
        loop, waiting = asyncio.get_running_loop(), True
        try:
            while True:
                step = await loop.run_in_executor(self._waiters, self._next_batched, stream)
                if waiting and stream.queue_wait_s is not None:
                    self.metrics.waited(stream.queue_wait_s)
                    waiting = False
                yield step
        finally:
            stream.close()  # the row leaves the batch before the next step
