"""Running synthesis requests against engine clients: one stream, a whole result, or many
requests at once (bounded, order kept), all stoppable by `/api/stop-generation`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from .audio.pcm import PcmChunk
from .cancellation import StopRegistry, until_stopped
from .engine_client import EngineClient
from .engine_types import SynthesisRequest


class SynthesisRunner:
    """Errors pass through as raised: EngineError subclasses, EngineUnavailable, and
    GenerationStopped when a stop request ends the work."""

    def __init__(self, stops: StopRegistry):
        self.stops = stops

    async def stream(self, client: EngineClient, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        with self.stops.track() as stop:
            async for chunk in until_stopped(aiter(client.synthesize(request)), stop):
                yield chunk

    async def collect(self, client: EngineClient, request: SynthesisRequest) -> list[PcmChunk]:
        return [chunk async for chunk in self.stream(client, request)]

    async def collect_many(self, client: EngineClient, requests: Sequence[SynthesisRequest],
                           concurrency: int) -> list[list[PcmChunk]]:
        """Every request's chunks, in request order; at most `concurrency` run at once (they
        spread over the engine's replicas). The first failure cancels the rest."""
        limit = asyncio.Semaphore(concurrency)

        async def one(request: SynthesisRequest) -> list[PcmChunk]:
            async with limit:
                return await self.collect(client, request)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(request)) for request in requests]
        return [task.result() for task in tasks]
