"""EngineHost (deployments/engine_host.py), the host an engine replica runs, here without Ray as
the in-process tests use it: requests take turns step by step (live ones before a job's lines),
a stop ends the generations that started before it after their current chunk, and a batching
engine's stream is closed when its reader goes away."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from deployments.engine_host import EngineHost
from engines.base import StepHooks
from speechcore.audio.pcm import PcmChunk
from speechcore.cancellation import GenerationStopped
from speechcore.engine_types import EngineInfo, SynthesisRequest


class StepEngine:
    """Speaks each word of the text as one step, and records which request ran each step."""

    name = "steps"
    batches = False

    def __init__(self, hooks: StepHooks):
        self.hooks, self.steps = hooks, []

    def info(self) -> EngineInfo:
        return EngineInfo(engine="piper", manufacturer_name="Test", audio_format="wav", models=["m"],
                          current_model="m", voices=["v"], default_voice="v")

    def synthesize(self, voice, request: SynthesisRequest):
        for word in request.text.split():
            self.steps.append((word, self.hooks.interactive_steps()))
            yield PcmChunk(b"\x00\x00" * 160, 16000)


def request(text: str, background: bool = False) -> SynthesisRequest:
    return SynthesisRequest(text=text, voice="v", background=background)


async def drain(host: EngineHost, req: SynthesisRequest) -> int:
    return len([chunk async for chunk in host.synthesize("v", req)])


def test_requests_take_turns_step_by_step():
    host = EngineHost(StepEngine, parallel_steps=1)

    async def both():
        return await asyncio.gather(drain(host, request("a1 a2 a3")), drain(host, request("b1 b2 b3")))

    assert asyncio.run(both()) == [3, 3]
    assert [word for word, _ in host.engine.steps] == ["a1", "b1", "a2", "b2", "a3", "b3"]
    assert {running for _, running in host.engine.steps} == {1}, "the engine is told one interactive step runs"


def test_a_live_request_goes_before_a_jobs_lines():
    host = EngineHost(StepEngine, parallel_steps=1)

    async def job_then_live():
        job = asyncio.create_task(drain(host, request("j1 j2 j3 j4", background=True)))
        while not host.engine.steps:
            await asyncio.sleep(0)
        await asyncio.gather(job, drain(host, request("l1 l2")))

    asyncio.run(job_then_live())
    words = [word for word, _ in host.engine.steps]
    assert words.index("l2") < words.index("j3"), words


def test_a_live_stream_closed_or_cancelled_mid_way_lets_the_jobs_steps_go_on():
    """A live generation holds a job's steps off while it is under way, and no longer: closed by
    its reader after one chunk, or cancelled while it waits, the job's request then runs to its end."""
    host = EngineHost(StepEngine, parallel_steps=1)

    async def closed_then_cancelled() -> int:
        live = host.synthesize("v", request("l1 l2 l3"))
        await anext(live)
        await live.aclose()
        waiting = asyncio.create_task(drain(host, request("c1 c2 c3")))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return await asyncio.wait_for(drain(host, request("j1 j2", background=True)), 10)

    assert asyncio.run(closed_then_cancelled()) == 2


class Stops:
    def __init__(self):
        self.epoch = 0

    def latest(self) -> int:
        return self.epoch

    async def now(self) -> int:
        return self.epoch


def test_a_stop_ends_the_generations_that_started_before_it():
    stops = Stops()
    host = EngineHost(StepEngine, stops=stops)

    async def stopped_mid_way():
        chunks = host.synthesize("v", request("w1 w2 w3 w4"))
        first = await anext(chunks)
        stops.epoch = 1  # a stop request, as the cluster's stop epoch rises
        with pytest.raises(GenerationStopped):
            await anext(chunks)
        return first, await drain(host, request("after the stop"))

    first, after = asyncio.run(stopped_mid_way())
    assert first.frames == 160 and after == 3, "a request that starts after the stop is spoken whole"
    assert [word for word, _ in host.engine.steps][:2] == ["w1", "w2"] and "w3" not in \
        [word for word, _ in host.engine.steps], "no step after the one in progress"


class BatchingEngine(StepEngine):
    """Computes in a thread of its own, as XTTS's batcher does; its streams record being closed."""

    batches = True

    def __init__(self, hooks: StepHooks):
        super().__init__(hooks)
        self.closed = threading.Event()

    def synthesize(self, voice, request: SynthesisRequest):
        engine = self

        class Stream:
            queue_wait_s = 0.0

            def __iter__(self):
                return self

            def __next__(self):
                if engine.closed.is_set():
                    raise StopIteration
                return PcmChunk(b"\x00\x00" * 160, 16000)

            def close(self):
                engine.closed.set()

        return Stream()


def test_a_batching_engines_stream_is_closed_when_its_reader_goes():
    host = EngineHost(BatchingEngine, max_batch=2)

    async def read_two():
        async with contextlib.aclosing(host.synthesize("v", request("endless"))) as chunks:
            await anext(chunks)
            await anext(chunks)

    asyncio.run(read_two())
    assert host.engine.closed.is_set(), "the row leaves the batch"


def test_with_real_piper_a_live_request_is_spoken_before_the_jobs_next_sentence(tmp_path):
    """What a Piper replica does with a job's sentences when a live request comes: the live request's
    sentences run before the job's next one (one step at a time, as on a one-core replica)."""
    from engines.base import EngineOptions
    from engines.piper import BUNDLED_VOICE, PiperEngine
    from speechcore.config.paths import ServerPaths

    host = EngineHost(lambda hooks: PiperEngine.create(ServerPaths.at(tmp_path), EngineOptions(threads=1), hooks),
                      parallel_steps=1)
    voice = host.engine.load_voice(BUNDLED_VOICE)
    arrived: list[str] = []

    async def speak(name: str, text: str, background: bool, first: asyncio.Event | None = None) -> None:
        async for _chunk in host.synthesize(voice, SynthesisRequest(text=text, voice=BUNDLED_VOICE,
                                                                    background=background)):
            arrived.append(name)
            if first:
                first.set()

    async def job_then_live() -> None:
        job_started = asyncio.Event()
        job = asyncio.create_task(speak("job", " ".join(f"Job sentence {i}." for i in range(8)), True, job_started))
        await job_started.wait()
        await asyncio.gather(job, speak("live", "A live question. And its second sentence.", False))

    asyncio.run(asyncio.wait_for(job_then_live(), 120))
    first_live, last_live = arrived.index("live"), len(arrived) - 1 - arrived[::-1].index("live")
    assert arrived.count("live") == 2 and arrived.count("job") == 8
    assert arrived[first_live:last_live + 1] == ["live", "live"], arrived
    assert first_live <= 2, f"at most the job's sentence in progress went before the live request: {arrived}"
