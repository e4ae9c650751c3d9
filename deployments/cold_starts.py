"""An engine scaled to zero (its autoscaling_config's min_replicas: 0), as the ingress meets it:
whether a deployment has replicas, none because its autoscaling took it to zero, or none it can
serve with; and a first chunk waited for as long as a replica's start takes, for a synthesis the
ingress asks of the engine or of the RVC replica that converts the engine's stream."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ray import serve
from ray.serve.schema import DeploymentStatus

from speechcore.audio.pcm import PcmChunk
from speechcore.engine_client import EngineUnavailable

from .engine_calls import engine_silent

_LOGGER = logging.getLogger("ray.serve")

SERVING_MAX_AGE_S = 0.5
"""How long a probe's answer is reused."""
COLD_START_PROBE_S = 1.0
"""A first chunk slower than this has the client ask whether the engine is scaled to zero (a
replica starting); faster ones never ask, so the probe stays off the request path."""


class Serving(enum.Enum):
    REPLICAS = "replicas"
    """A replica runs."""
    SCALED_TO_ZERO = "scaled_to_zero"
    """No replica runs and Serve counts the deployment healthy or scaling: its autoscaling took it to
    zero (min_replicas: 0), and a request starts one."""
    UNAVAILABLE = "unavailable"
    """No replica runs and none is meant to: starting, failed or not deployed."""


class ServingProbe:
    """Whether a deployment has a running replica, asked of the Serve controller (so it never
    waits behind a generation). An answer is reused for half a second and concurrent callers share
    one question; when the controller cannot answer, the last answer stands."""

    def __init__(self, app_name: str, deployment_name: str):
        self.app_name, self.deployment_name = app_name, deployment_name
        self._serving, self._serving_at = Serving.UNAVAILABLE, float("-inf")
        self._asking: asyncio.Future[Serving] | None = None

    async def check(self) -> Serving:
        if time.monotonic() - self._serving_at < SERVING_MAX_AGE_S:
            return self._serving
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(self._ask())
        return await asyncio.shield(self._asking)

    async def _ask(self) -> Serving:
        try:
            status = await asyncio.to_thread(serve.status)
        except Exception as exc:  # the controller restarting: nothing new to say
            _LOGGER.warning("could not ask Serve about %s: %s", self.app_name, exc)
            return self._serving
        app = status.applications.get(self.app_name)
        deployment = app.deployments.get(self.deployment_name) if app is not None else None
        if deployment is None:
            serving = Serving.UNAVAILABLE
        elif deployment.replica_states.get("RUNNING", 0) > 0:
            serving = Serving.REPLICAS
        elif deployment.status in (DeploymentStatus.HEALTHY, DeploymentStatus.UPSCALING, DeploymentStatus.DOWNSCALING):
            serving = Serving.SCALED_TO_ZERO
        else:
            serving = Serving.UNAVAILABLE
        self._serving, self._serving_at = serving, time.monotonic()
        return serving


class ServingChain:
    """The deployments one call goes through (the RVC replica, then the engine whose stream it
    converts): scaled to zero when any of them is (a replica starts for the call)."""

    def __init__(self, *probes: ServingProbe):
        self.probes = probes

    async def check(self) -> Serving:
        answers = await asyncio.gather(*(probe.check() for probe in self.probes))
        for serving in (Serving.SCALED_TO_ZERO, Serving.UNAVAILABLE):
            if serving in answers:
                return serving
        return Serving.REPLICAS


@dataclass(frozen=True)
class FirstChunk:
    chunk: PcmChunk | None
    """None: the stream was empty."""
    cold_start_s: float | None
    """From the call to this chunk, when the engine was scaled to zero (a replica started for it)."""


async def first_chunk(stream: AsyncIterator[PcmChunk], app_name: str, serving: ServingProbe | ServingChain,
                      chunk_timeout_s: float | None, cold_start_timeout_s: float | None,
                      probe_after_s: float = COLD_START_PROBE_S) -> FirstChunk:
    """The stream's first chunk, waited for up to `chunk_timeout_s` (EngineTimeout), or, when the
    engine turns out to be scaled to zero, up to `cold_start_timeout_s` from the call (None: the
    chunk timeout still; then EngineUnavailable: a 503 with Retry-After). The stream is stepped in
    the caller's task: a timeout or a cancellation ends the engine call as any consumer stopping
    early does."""
    loop = asyncio.get_running_loop()
    started, cold = loop.time(), False

    async def probe(deadline: asyncio.Timeout) -> None:
        nonlocal cold
        await asyncio.sleep(probe_after_s)
        if await serving.check() is Serving.SCALED_TO_ZERO and not deadline.expired():
            cold = True
            if cold_start_timeout_s is not None:
                deadline.reschedule(started + cold_start_timeout_s)

    try:
        async with asyncio.timeout(chunk_timeout_s) as deadline:
            prober = asyncio.create_task(probe(deadline))
            try:
                chunk = await anext(stream)
            finally:
                prober.cancel()
    except StopAsyncIteration:
        return FirstChunk(None, None)
    except TimeoutError:
        if cold:
            waited_s = loop.time() - started
            raise EngineUnavailable(f"the {app_name} engine is scaled to zero and no replica answered within "
                                    f"{waited_s:.0f} s (cold_start_timeout_s); retry shortly") from None
        raise engine_silent(app_name, chunk_timeout_s) from None
    return FirstChunk(chunk, loop.time() - started if cold else None)


async def through_cold_start(stream: AsyncIterator[PcmChunk], app_name: str, serving: ServingProbe | ServingChain,
                             chunk_timeout_s: float | None, cold_start_timeout_s: float | None,
                             cold_started: Callable[[float], None] | None = None) -> AsyncIterator[PcmChunk]:
    """The stream's chunks, the first waited for as first_chunk says (`app_name` and `serving`: the
    engine whose start it may wait for); `cold_started(seconds)` hears a cold start's time. The
    stream is closed when this ends, however it ends."""
    async with contextlib.aclosing(stream):
        first = await first_chunk(stream, app_name, serving, chunk_timeout_s, cold_start_timeout_s)
        if first.cold_start_s is not None and cold_started is not None:
            cold_started(first.cold_start_s)
        if first.chunk is None:
            return
        yield first.chunk
        async for chunk in stream:
            yield chunk
