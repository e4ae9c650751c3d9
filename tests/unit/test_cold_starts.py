"""The wait for an engine's first chunk (deployments/cold_starts.first_chunk): a fast one never asks
Serve anything; a slow one asks whether the engine is scaled to zero, and then waits as long as a
replica's start may take, answering 503 (EngineUnavailable) past it and 504 (EngineTimeout) when a
running engine is silent; a stream given up is closed, so Serve cancels the replica's work."""

from __future__ import annotations

import asyncio

import pytest

from deployments.cold_starts import COLD_START_PROBE_S, Serving, first_chunk
from speechcore.audio.pcm import PcmChunk
from speechcore.engine_client import EngineTimeout, EngineUnavailable

CHUNK = PcmChunk(b"\0\0" * 100, 16000)


class Probe:
    def __init__(self, serving: Serving):
        self.serving, self.asked = serving, 0

    async def check(self) -> Serving:
        self.asked += 1
        return self.serving


class Stream:
    """A relayed engine stream whose first chunk comes after `delay_s` (None: never)."""

    def __init__(self, delay_s: float | None):
        self.delay_s, self.closed = delay_s, False

    def __aiter__(self):
        return self._chunks()

    async def _chunks(self):
        try:
            await asyncio.sleep(3600 if self.delay_s is None else self.delay_s)
            yield CHUNK
        finally:
            self.closed = True


def _first(stream: Stream, probe: Probe, chunk_timeout_s: float | None = 300, cold_start_timeout_s: float = 120):
    return asyncio.run(first_chunk(aiter(stream), "vits", probe, chunk_timeout_s, cold_start_timeout_s))


def test_a_fast_first_chunk_never_asks_whether_the_engine_is_at_zero():
    probe = Probe(Serving.SCALED_TO_ZERO)
    assert _first(Stream(0.01), probe) == (CHUNK, None)
    assert probe.asked == 0


def test_a_first_chunk_from_a_replica_started_for_it_is_a_cold_start_with_its_time():
    probe = Probe(Serving.SCALED_TO_ZERO)
    chunk, cold_start_s = _first(Stream(COLD_START_PROBE_S + 0.3), probe, chunk_timeout_s=0.5)
    assert chunk == CHUNK and COLD_START_PROBE_S + 0.3 <= cold_start_s < COLD_START_PROBE_S + 2
    assert probe.asked == 1


def test_a_replica_that_does_not_start_in_time_is_a_503_and_the_stream_is_closed():
    stream = Stream(None)
    with pytest.raises(EngineUnavailable, match="scaled to zero and no replica started within 1.5 s"):
        _first(stream, Probe(Serving.SCALED_TO_ZERO), cold_start_timeout_s=1.5)
    assert stream.closed


def test_a_silent_running_engine_is_a_504_after_the_chunk_timeout():
    stream = Stream(None)
    with pytest.raises(EngineTimeout, match="sent nothing for 1.5 s"):
        _first(stream, Probe(Serving.REPLICAS), chunk_timeout_s=1.5)
    assert stream.closed


def test_an_empty_stream_has_no_first_chunk():
    async def nothing():
        return
        yield

    assert asyncio.run(first_chunk(nothing(), "vits", Probe(Serving.REPLICAS), 300, 120)) == (None, None)
