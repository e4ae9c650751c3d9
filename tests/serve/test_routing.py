"""How calls spread over engine replicas (deployments/routing.py), on the real Serve of the test
server: a throw-away application with the engines' router options and two replicas that hold each
call for a moment and say which replica they are. Calls stream, as engine calls do."""

import asyncio
import collections
import time

import pytest
from ray import serve

import serve_app

pytestmark = pytest.mark.serve
APP = "routing-probe"


class Holder:
    def __init__(self):
        self.replica = serve.get_replica_context().replica_id.unique_id

    @serve.multiplexed(max_num_models_per_replica=4)
    async def _voice(self, voice: str) -> str:
        return voice

    async def hold(self, seconds: float):
        await self._voice(serve.get_multiplexed_model_id() or "default")
        await asyncio.sleep(seconds)
        yield self.replica


def two_replicas_with(options: dict):
    deployment = serve.deployment(Holder, name="holder", num_replicas=2, ray_actor_options={"num_cpus": 0}, **options)
    return serve.run(deployment.bind(), name=APP, route_prefix=None)


@pytest.fixture(scope="module")
def two_replicas(serve_server):
    options = {key: serve_app.ENGINE_OPTIONS[key] for key in ("request_router_config", "max_ongoing_requests")}
    handle = two_replicas_with(options)
    try:
        burst(handle, 4)  # the first calls open the connections, and may miss Serve's 0.1 s probe
        yield handle
    finally:
        serve.delete(APP)


async def call(handle, seconds: float, voice: str = "") -> str:
    stream = handle.options(stream=True, multiplexed_model_id=voice).hold.remote(seconds)
    return [replica async for replica in stream][0]


def burst(handle, calls: int, seconds: float = 0.4) -> collections.Counter:
    async def run():
        return await asyncio.gather(*(call(handle, seconds) for _ in range(calls)))
    return collections.Counter(asyncio.run(run()))


def test_calls_sent_in_the_same_instant_are_split_evenly(two_replicas):
    # Serve's default (two random choices, ties at random) splits a burst of 4 evenly only 3 times
    # in 8; eight even bursts in a row would happen by chance about once in 2,500.
    for _ in range(8):
        assert sorted(burst(two_replicas, 4).values()) == [2, 2]


def test_a_call_goes_to_the_replica_with_fewer_calls_in_flight(two_replicas):
    async def run():
        long_calls = [asyncio.ensure_future(call(two_replicas, 2.0)) for _ in range(3)]
        await asyncio.sleep(0.5)
        short = [await call(two_replicas, 0.0) for _ in range(4)]
        return collections.Counter(await asyncio.gather(*long_calls)), short
    busy, short = asyncio.run(run())
    assert sorted(busy.values()) == [1, 2]
    less_busy = min(busy, key=busy.get)
    assert short == [less_busy] * 4


def test_a_voice_stays_on_the_replica_that_loaded_it(two_replicas):
    first = asyncio.run(call(two_replicas, 0.0, voice="voice-a"))
    time.sleep(1.0)  # the replica tells the controller which voices it holds, the controller the callers
    again = [asyncio.run(call(two_replicas, 0.0, voice="voice-a")) for _ in range(6)]
    assert again == [first] * 6
