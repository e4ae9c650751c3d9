"""An engine scaled to zero (its autoscaling_config's min_replicas: 0), as the ingress meets it:
whether a deployment has replicas, none because its autoscaling took it to zero, or none it can
serve with; and a first chunk waited for as long as a replica's start takes."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator

from ray import serve
from ray.serve.schema import DeploymentStatus

from speechcore.audio.pcm import PcmChunk
from speechcore.engine_client import EngineTimeout, EngineUnavailable

SERVING_MAX_AGE_S = 0.5
COLD_START_PROBE_S = 1.0
"""A first chunk slower than this has the client ask whether the engine is scaled to zero (a
replica starting); faster ones never ask, so the probe stays off the request path."""


class Serving(enum.Enum):
    REPLICAS = "replicas"
    """A replica runs."""
    SCALED_TO_ZERO = "scaled_to_zero"
    """No replica runs and Serve counts the deployment healthy or scaling: its autoscaling took it to
    zero (min_replicas: 0), and a request starts one."""
    NONE = "none"
    """No replica runs and none is meant to: starting, failed or not deployed."""


class ServingProbe:
    """Whether a deployment has a running replica, asked of the Serve controller (so it never
    waits behind a generation); the answer is reused for half a second."""

    def __init__(self, app_name: str, deployment_name: str):
        self.app_name, self.deployment_name = app_name, deployment_name
        self._serving, self._serving_at = Serving.NONE, float("-inf")

    async def check(self) -> Serving:
        if time.monotonic() - self._serving_at < SERVING_MAX_AGE_S:
            return self._serving
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(self.app_name)
        deployment = app.deployments.get(self.deployment_name) if app is not None else None
        if deployment is None:
            serving = Serving.NONE
        elif deployment.replica_states.get("RUNNING", 0) > 0:
            serving = Serving.REPLICAS
        elif deployment.status in (DeploymentStatus.HEALTHY, DeploymentStatus.UPSCALING, DeploymentStatus.DOWNSCALING):
            serving = Serving.SCALED_TO_ZERO
        else:
            serving = Serving.NONE
        self._serving, self._serving_at = serving, time.monotonic()
        return serving


async def first_chunk(stream: AsyncIterator[PcmChunk], app_name: str, serving: ServingProbe,
                      chunk_timeout_s: float | None, cold_start_timeout_s: float
                      ) -> tuple[PcmChunk | None, float | None]:
    """The stream's first chunk (None for an empty stream), waited for up to `chunk_timeout_s`
    (EngineTimeout), or up to `cold_start_timeout_s` when the engine turns out to be scaled to zero
    (EngineUnavailable: a 503 with Retry-After); with the seconds it took when it was a cold start."""
    started = time.monotonic()
    first = asyncio.ensure_future(anext(stream))
    try:
        done, _ = await asyncio.wait({first}, timeout=COLD_START_PROBE_S)
        cold = not done and await serving.check() is Serving.SCALED_TO_ZERO
        limit = cold_start_timeout_s if cold else chunk_timeout_s
        if not done:
            left = None if limit is None else max(limit - (time.monotonic() - started), 0.0)
            done, _ = await asyncio.wait({first}, timeout=left)
        if not done and cold:
            raise EngineUnavailable(f"the {app_name} engine is scaled to zero and no replica started within "
                                    f"{limit:g} s (cold_start_timeout_s); retry shortly")
        if not done:
            raise EngineTimeout(f"the {app_name} engine sent nothing for {limit:g} s")
        chunk = first.result()
    except StopAsyncIteration:
        return None, None
    finally:
        if not first.done():
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await first
    return chunk, (time.monotonic() - started) if cold else None
