"""An engine at zero replicas as the ingress meets it, without Ray (deployments/cold_starts.py and
HandleEngineClient with a stand-in probe and rollout). The wait for the first chunk: a fast one never
asks Serve anything; a slow one asks whether the engine is scaled to zero, and then waits as long
as a replica's start may take, answering 503 (EngineUnavailable) past it and 504 (EngineTimeout)
when a running engine is silent; a stream given up (timeout, client gone) is closed, so Serve
cancels the replica's work. At zero the description is the kept one and a model choice is the next
replica's, checked against the kept model list, without any call to the engine."""

from __future__ import annotations

import asyncio

import pytest

from deployments.cold_starts import FirstChunk, Serving, first_chunk
from deployments.handles import HandleEngineClient
from speechcore.audio.pcm import PcmChunk
from speechcore.engine_client import EngineTimeout, EngineUnavailable
from speechcore.engine_types import EngineInfo, UnknownModel

CHUNK = PcmChunk(b"\0\0" * 100, 16000)
PROBE_AFTER_S = 0.2


class Probe:
    def __init__(self, serving: Serving):
        self.serving, self.asked = serving, 0

    async def check(self) -> Serving:
        self.asked += 1
        return self.serving


class Stream:
    """A relayed engine stream whose first chunk comes after `delay_s` (None: never)."""

    def __init__(self, delay_s: float | None):
        self.delay_s, self.closed, self.started = delay_s, False, asyncio.Event()

    def __aiter__(self):
        return self._chunks()

    async def _chunks(self):
        try:
            self.started.set()
            await asyncio.sleep(3600 if self.delay_s is None else self.delay_s)
            yield CHUNK
        finally:
            self.closed = True


def _first(stream: Stream, probe: Probe, chunk_timeout_s: float | None = 300,
           cold_start_timeout_s: float | None = 120) -> FirstChunk:
    return asyncio.run(first_chunk(aiter(stream), "vits", probe, chunk_timeout_s, cold_start_timeout_s,
                                   probe_after_s=PROBE_AFTER_S))


def test_a_fast_first_chunk_never_asks_whether_the_engine_is_at_zero():
    probe = Probe(Serving.SCALED_TO_ZERO)
    assert _first(Stream(0), probe) == FirstChunk(CHUNK, None)
    assert probe.asked == 0


def test_a_first_chunk_from_a_replica_started_for_it_is_a_cold_start_with_its_time():
    probe = Probe(Serving.SCALED_TO_ZERO)
    first = _first(Stream(PROBE_AFTER_S + 0.3), probe, chunk_timeout_s=PROBE_AFTER_S + 0.1)
    assert first.chunk == CHUNK and first.cold_start_s >= PROBE_AFTER_S + 0.3
    assert probe.asked == 1


def test_a_replica_that_does_not_start_in_time_is_a_503_and_the_stream_is_closed():
    stream = Stream(None)
    with pytest.raises(EngineUnavailable, match="scaled to zero and no replica answered within"):
        _first(stream, Probe(Serving.SCALED_TO_ZERO), cold_start_timeout_s=PROBE_AFTER_S + 0.1)
    assert stream.closed


def test_a_silent_running_engine_is_a_504_after_the_chunk_timeout():
    stream = Stream(None)
    with pytest.raises(EngineTimeout, match="sent nothing for 0.5 s"):
        _first(stream, Probe(Serving.REPLICAS), chunk_timeout_s=0.5)
    assert stream.closed


def test_an_empty_stream_has_no_first_chunk():
    async def nothing():
        return
        yield

    assert asyncio.run(first_chunk(nothing(), "vits", Probe(Serving.REPLICAS), 300, 120)) == FirstChunk(None, None)


def test_a_client_gone_during_a_cold_start_closes_the_stream():
    async def run(stream: Stream) -> None:
        waiting = asyncio.create_task(first_chunk(aiter(stream), "vits", Probe(Serving.SCALED_TO_ZERO), 300, 120,
                                                  probe_after_s=PROBE_AFTER_S))
        await stream.started.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    stream = Stream(None)
    asyncio.run(run(stream))
    assert stream.closed


INFO = EngineInfo(engine="vits", manufacturer_name="Coqui", audio_format="wav", models=["vits - a", "vits - b"],
                  current_model="vits - a", voices=["p225"], default_voice="p225")


class Rollout:
    def __init__(self):
        self.updates = []

    async def is_updating(self, app: str) -> bool:
        return False

    async def update(self, app: str, deployment: str, options: dict) -> list[str]:
        self.updates.append(options)
        return []  # no replica runs


class NoCalls:
    async def handle(self):
        raise AssertionError("the engine was called while at zero")


def _client_at_zero() -> HandleEngineClient:
    client = HandleEngineClient("vits", "tts-vits", Rollout(), describe_timeout_s=2)
    client._serving, client.calls, client._last_info = Probe(Serving.SCALED_TO_ZERO), NoCalls(), INFO
    return client


def test_at_zero_the_kept_description_answers_and_a_model_choice_is_the_next_replicas():
    client = _client_at_zero()
    client.forget_description()  # a voice upload elsewhere: still nothing to ask
    assert asyncio.run(client.describe()) == INFO
    asyncio.run(client.select_model("vits - b"))
    assert client.rollout.updates == [{"user_config": {"model": "vits - b"}}]
    assert asyncio.run(client.describe()).current_model == "vits - b"
    with pytest.raises(UnknownModel, match="vits - a, vits - b; got 'vits - c'"):
        asyncio.run(client.select_model("vits - c"))
    assert len(client.rollout.updates) == 1
