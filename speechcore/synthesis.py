"""Running synthesis requests against engine clients: one stream, a whole result, or many
requests at once (bounded, order kept), all stoppable by `/api/stop-generation`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from .audio.pcm import PcmChunk
from .cancellation import StopRegistry, until_stopped
from .engine_client import ReplicaLost
from .engine_types import SynthesisRequest

_LOGGER = logging.getLogger(__name__)


class AudioSource(Protocol):
    """Where a request's audio comes from: an engine, or an engine followed by voice conversion."""

    def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        ...


class SynthesisRunner:
    """Errors pass through as raised: EngineError subclasses, EngineUnavailable, and
    GenerationStopped when a stop request ends the work."""

    def __init__(self, stops: StopRegistry):
        self.stops = stops

    async def stream(self, source: AudioSource, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        with self.stops.track() as stop:
            async for chunk in until_stopped(aiter(source.synthesize(request)), stop):
                yield chunk

    async def collect(self, source: AudioSource, request: SynthesisRequest) -> list[PcmChunk]:
        """The whole audio. Nothing has reached the client yet, so a replica lost on the way is
        retried once (Serve routes the retry to a live replica)."""
        try:
            return [chunk async for chunk in self.stream(source, request)]
        except ReplicaLost as exc:
            _LOGGER.warning("retrying once: %s", exc)
            return [chunk async for chunk in self.stream(source, request)]

    async def collect_many(self, jobs: Sequence[tuple[AudioSource, SynthesisRequest]],
                           concurrency: int) -> list[list[PcmChunk]]:
        """Every job's chunks, in job order; at most `concurrency` run at once (they spread over
        the replicas). The first failure cancels the rest."""
        limit = asyncio.Semaphore(concurrency)

        async def one(source: AudioSource, request: SynthesisRequest) -> list[PcmChunk]:
            async with limit:
                return await self.collect(source, request)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(source, request)) for source, request in jobs]
        except ExceptionGroup as failures:  # several jobs failed at once: report the first
            raise failures.exceptions[0] from None
        return [task.result() for task in tasks]
