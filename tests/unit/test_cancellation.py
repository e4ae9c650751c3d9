import asyncio

import pytest

from speechcore.cancellation import GenerationStopped, StopRegistry, until_stopped


async def slow_source(log):
    try:
        for i in range(100):
            await asyncio.sleep(0.01 if i < 3 else 10)
            yield i
    finally:
        log.append("closed")


def test_a_stop_ends_the_stream_without_waiting_for_the_next_item():
    async def run():
        registry, log, got = StopRegistry(), [], []
        with registry.track() as flag:
            async def consume():
                async for item in until_stopped(slow_source(log), flag):
                    got.append(item)
            task = asyncio.create_task(consume())
            await asyncio.sleep(0.2)
            assert registry.stop_all() == 1
            with pytest.raises(GenerationStopped):
                await asyncio.wait_for(task, 2)
        assert registry.active == 0
        return got, log

    got, log = asyncio.run(run())
    assert got == [0, 1, 2]
    assert log == ["closed"]


def test_an_unstopped_stream_yields_everything():
    async def source():
        for i in range(5):
            yield i

    async def run():
        return [i async for i in until_stopped(source(), asyncio.Event())]

    assert asyncio.run(run()) == [0, 1, 2, 3, 4]
