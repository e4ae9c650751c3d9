"""RvcServer: one RVC replica. Voice models are multiplexed (cached per replica; requests for a
model go to replicas that have it loaded). For generation it consumes the engine's stream itself
(a stream cannot be passed into another handle call) and yields converted chunks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import torch
from ray import serve

from engines.devices import torch_sees_cuda
from rvc.chunks import convert_chunk, converted_stream
from rvc.pipeline import VoiceConverter, VoiceModel, check_voice_files
from speechcore.audio.pcm import PcmChunk
from speechcore.cancellation import GenerationStopped
from speechcore.config.app_args import RvcArgs
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import SynthesisRequest
from speechcore.rvc_requests import ConversionRequest
from speechcore.safe_paths import resolve_inside

from .cluster_signals import ClusterStopSignal, OwnReport, WatchedStopEpoch, release_replica
from .engine_calls import EngineCalls, EngineRoute
from .placement import place_replica
from .voice_cache import LoadedVoice, fresh_voice, load_held

_LOGGER = logging.getLogger("ray.serve")
MAX_VOICES_PER_REPLICA = 4


class RvcServer:
    async def __init__(self, args: dict[str, Any]):
        self.args = RvcArgs.model_validate(args)
        placement = place_replica(self.args.device, torch_sees_cuda, "RVC")
        device = placement.device
        torch.set_num_threads(self.args.threads)
        paths = ServerPaths.at(self.args.root)
        self.root = paths.root
        self.converter = VoiceConverter(paths.rvc_voices, paths.rvc_base, device)
        self._stops = WatchedStopEpoch(ClusterStopSignal())
        self._watching = asyncio.create_task(self._stops.watch())
        self._engines: dict[tuple[str, str], EngineCalls] = {}
        self._report = OwnReport(placement)
        await self._report.publish({})
        _LOGGER.info("RVC converter ready on %s with %d thread(s)", device, self.args.threads)

    def __del__(self) -> None:
        release_replica(self._watching, self._report)

    @serve.multiplexed(max_num_models_per_replica=MAX_VOICES_PER_REPLICA)
    async def _loaded(self, model: str) -> LoadedVoice:
        return await load_held(model, self.converter.voice_version, self.converter.load_voice)

    async def _voice(self, model: str) -> VoiceModel:
        """The voice model as its files are now (a replaced upload is loaded again)."""
        return await fresh_voice(await self._loaded(model), model, self.converter.voice_version,
                                 self.converter.load_voice)

    async def check_voice_files(self, files: list[str]) -> None:
        """Whether an upload's files (paths under the server root) make an RVC voice."""
        await asyncio.to_thread(check_voice_files, [resolve_inside(self.root, name) for name in files])

    async def _convert(self, voice: VoiceModel, chunk: PcmChunk, conversion: ConversionRequest) -> PcmChunk:
        return await asyncio.to_thread(convert_chunk, self.converter, voice, chunk, conversion)

    async def convert_synthesis(self, engine: EngineRoute, request: SynthesisRequest,
                                conversion: ConversionRequest) -> AsyncIterator[PcmChunk]:
        """The engine's stream for `request` (routed as the engine's voice affinity says),
        converted; a cluster-wide stop ends it between pieces."""
        started = await self._stops.now()
        voice = await self._voice(conversion.model)
        target = (engine.app_name, engine.deployment_name)
        calls = self._engines.get(target) or self._engines.setdefault(target, EngineCalls(*target))

        async def convert(chunk: PcmChunk) -> PcmChunk:
            converted = await self._convert(voice, chunk, conversion)
            if self._stops.latest() > started:
                raise GenerationStopped()
            return converted

        async for chunk in converted_stream(calls.synthesize(request, engine.by_voice), convert):
            yield chunk

    async def convert_audio(self, audio: PcmChunk, conversion: ConversionRequest) -> PcmChunk:
        voice = await self._voice(conversion.model)
        return await self._convert(voice, audio, conversion)
