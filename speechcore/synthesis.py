"""Running synthesis requests against engine clients: one stream, a whole result, or many
requests at once (bounded, order kept), all stoppable by `/api/stop-generation`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from .audio.pcm import PcmChunk
from .cancellation import GenerationStopped, StopRegistry, until_stopped
from .engine_client import ReplicaLost
from .engine_types import SynthesisRequest
from .telemetry import CURRENT_REQUEST, RequestRecord, Telemetry

_LOGGER = logging.getLogger(__name__)


class AudioSource(Protocol):
    """Where a request's audio comes from: an engine, or an engine followed by voice conversion."""

    def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        ...


class SynthesisRunner:
    """Errors pass through as raised: EngineError subclasses, EngineUnavailable, and
    GenerationStopped when a stop request ends the work. `engine` names the engine behind a source
    for the request record and the metrics."""

    def __init__(self, stops: StopRegistry, telemetry: Telemetry | None = None):
        self.stops = stops
        self.telemetry = telemetry or Telemetry()

    async def stream(self, source: AudioSource, request: SynthesisRequest, engine: str) -> AsyncIterator[PcmChunk]:
        if record := CURRENT_REQUEST.get():
            record.add_synthesis(engine, request.voice, request.text, request.language)
        started, audio_s = time.perf_counter(), 0.0
        with self.stops.track() as stop:
            try:
                async for chunk in until_stopped(aiter(source.synthesize(request)), stop):
                    audio_s += chunk.duration_s
                    if record:
                        record.audio_s += chunk.duration_s
                    yield chunk
            except GenerationStopped:
                self._cancelled(engine, "stop", record)
                raise
            except (GeneratorExit, asyncio.CancelledError):
                self._cancelled(engine, "disconnect", record)
                raise
        self.telemetry.synthesis_finished(engine, len(request.text), audio_s, time.perf_counter() - started)

    def _cancelled(self, engine: str, reason: str, record: RequestRecord | None) -> None:
        self.telemetry.synthesis_cancelled(engine, reason)
        if record:
            record.outcome = "stopped" if reason == "stop" else "disconnected"

    async def collect(self, source: AudioSource, request: SynthesisRequest, engine: str) -> list[PcmChunk]:
        """The whole audio. Nothing has reached the client yet, so a replica lost on the way is
        retried once (Serve routes the retry to a live replica)."""
        try:
            return [chunk async for chunk in self.stream(source, request, engine)]
        except ReplicaLost as exc:
            _LOGGER.warning("retrying once: %s", exc)
            return [chunk async for chunk in self.stream(source, request, engine)]

    async def collect_many(self, jobs: Sequence[tuple[AudioSource, SynthesisRequest]], engine: str,
                           concurrency: int) -> list[list[PcmChunk]]:
        """Every job's chunks, in job order; at most `concurrency` run at once (they spread over
        the replicas). The first failure cancels the rest."""
        limit = asyncio.Semaphore(concurrency)

        async def one(source: AudioSource, request: SynthesisRequest) -> list[PcmChunk]:
            async with limit:
                return await self.collect(source, request, engine)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(source, request)) for source, request in jobs]
        except ExceptionGroup as failures:  # several jobs failed at once: report the first
            raise failures.exceptions[0] from None
        return [task.result() for task in tasks]
