"""EngineServer: one engine replica, the Serve deployment around an EngineHost (engine_host.py,
where requests take turns or batch). What it adds is what only Serve has: the device and GPU share
Serve gave the replica, voices multiplexed per replica (with `voice_affinity`, requests for a
voice go to replicas that have it loaded), Ray metrics, the cluster-wide stop epoch, and the
reports a rollout reads to know what each replica serves."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from engines.base import EngineOptions, StepHooks, TTSEngine
from engines.registry import load_engine_class
from speechcore.audio.pcm import PcmChunk
from speechcore.config.app_args import EngineArgs, EngineUserConfig
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import EngineInfo, SynthesisRequest
from speechcore.safe_paths import resolve_inside

from .cluster_signals import ClusterStopSignal, OwnReport, ReplicaPlacement, WatchedStopEpoch, release_replica
from .engine_host import EngineHost
from .metrics import EngineMetrics
from .placement import place_replica
from .voice_cache import LoadedVoice

_LOGGER = logging.getLogger("ray.serve")
MAX_VOICES_PER_REPLICA = 8


def _replica_options(args: EngineArgs, placement: ReplicaPlacement) -> EngineOptions:
    """The engine's knobs as the application's args set them, with the device and GPU share of the
    replica's placement."""
    knobs = {field.name: getattr(args, field.name) for field in dataclasses.fields(EngineOptions)
             if field.name in EngineArgs.model_fields}
    return EngineOptions(**{**knobs, "device": placement.device, "gpu_share": placement.gpu_share})


class EngineServer:
    async def __init__(self, args: dict[str, Any], engine_cls: type[TTSEngine] | None = None):
        self.args = EngineArgs.model_validate(args)
        cls = engine_cls or load_engine_class(self.args.engine)
        self.placement = place_replica(self.args.device, cls.sees_cuda, f"engine {self.args.engine}")
        options = _replica_options(self.args, self.placement)
        self.metrics = EngineMetrics(self.args.engine)
        started = time.perf_counter()
        paths = ServerPaths.at(self.args.root)
        self.root = paths.root
        self._stops = WatchedStopEpoch(ClusterStopSignal())
        self._watching = asyncio.create_task(self._stops.watch())

        def create(hooks: StepHooks) -> TTSEngine:
            return cls.create(paths, options, hooks)

        self.host = EngineHost(create, self.args.parallel_steps, self.args.max_batch, self.metrics, self._stops)
        self._report = OwnReport(self.placement)
        # The first model loads here (the host's hooks are in place before it does).
        info = await self.host.describe()
        self.metrics.model_loaded(info.current_model or "none", time.perf_counter() - started)
        _LOGGER.info("engine %s ready on %s with %d thread(s)", self.args.engine, options.device, options.threads)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Called by Serve with the deployment's user_config, at start and on every rollout. The
        replica's report says what it serves now (and why not what was asked, if it could not):
        the rollout that asked reads the reports and answers a failure."""
        result = await self.host.reconfigure(EngineUserConfig.model_validate(user_config or {}))
        if result.error:
            _LOGGER.error("keeping the current model: %s", result.error)
        await self._report.publish(user_config or {}, result.error)
        if result.changed:
            self.metrics.model_loaded(result.info.current_model or "none", result.seconds)
            _LOGGER.info("engine %s now serves model %s (loaded in %.1f s)", self.args.engine,
                         result.info.current_model, result.seconds)

    def __del__(self) -> None:
        release_replica(self._watching, self._report)

    async def check_health(self) -> None:
        """Serve's periodic probe: a replica whose synthesis step never returns is replaced."""
        self.host.check_health(self.args.step_timeout_s)

    async def check_model(self, model: str) -> None:
        await self.host.check_model(model)

    async def batch_tally(self) -> dict[str, int]:
        """The batch steps of the replica a handle reaches (BatchTally), since it started: what a
        test of one replica reads rather than the metrics' export rounds."""
        return self.metrics.tally.read()

    async def describe(self) -> EngineInfo:
        return dataclasses.replace(await self.host.describe(), voice_affinity=self.args.voice_affinity)

    async def check_voice_files(self, files: list[str]) -> None:
        """Whether an upload's files (paths under the server root) make a voice this engine loads;
        VoiceFilesRefused says why not."""
        await self.host.check_voice_files([resolve_inside(self.root, name) for name in files])

    @serve.multiplexed(max_num_models_per_replica=MAX_VOICES_PER_REPLICA)
    async def _loaded(self, voice: str) -> LoadedVoice:
        return await self.host.load_voice(voice)

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        """Streams the chunks of one request (see EngineHost.synthesize). The stop epoch it starts in
        is read from the GCS while its voice is looked up: one round trip less on every request."""
        epoch = asyncio.ensure_future(self._stops.now())
        epoch.add_done_callback(lambda read: read.cancelled() or read.exception())  # seen, if never awaited
        try:
            voice = await self.host.fresh_voice(await self._loaded(request.voice), request.voice)
            started = await epoch
        finally:
            epoch.cancel()
        async with contextlib.aclosing(self.host.synthesize(voice, request, started)) as chunks:
            async for chunk in chunks:
                yield chunk
