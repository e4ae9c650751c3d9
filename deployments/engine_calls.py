"""Calls from this project's replicas to engine applications through Serve handles, in one place
for the ingress and the RVC replica: Ray's errors turned back into the core's, streams relayed
with a chunk timeout, and a synthesis call routed as the engine's `voice_affinity` asks.

Calls go to the engine deployment's own handle, not the application's: the application's ingress
is a HandleOnlyIngress (deployments/handle_only_ingress.py), so that the engine keeps its request
router under Serve's HAProxy ingress."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, RayServeException
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from speechcore.audio.pcm import PcmChunk
from speechcore.cancellation import GenerationStopped
from speechcore.engine_client import EngineTimeout, EngineUnavailable, ReplicaLost
from speechcore.engine_types import EngineError, SynthesisRequest

MAX_VOICE_HANDLES = 64
"""Handles configured per voice that EngineCalls keeps (the least recently used go first)."""


RVC_DEPLOYMENT_NAME = "rvc"
"""The converting deployment of the RVC application."""


def engine_deployment_name(engine: str) -> str:
    """The Serve deployment in an engine's application (what the dashboard and metrics show)."""
    return f"tts-{engine}"


@contextlib.contextmanager
def as_core_errors(app_name: str) -> Iterator[None]:
    """Ray's wrappers turned back into the core's errors: the engine's own EngineError (with its
    message, not a remote traceback), EngineUnavailable for full queues and lost replicas."""
    try:
        yield
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, GenerationStopped):
            raise GenerationStopped() from None
        if isinstance(cause, EngineError):
            raise type(cause)(*cause.args) from None
        raise EngineError(f"{type(cause).__name__}: {cause}") from None
    except BackPressureError as exc:
        raise EngineUnavailable(f"the {app_name} engine is at its queue limit; retry shortly") from exc
    except (RayActorError, ActorUnavailableError) as exc:
        raise ReplicaLost(f"a replica of the {app_name} engine was lost; retry shortly") from exc


async def deployment_handle(app_name: str, deployment_name: str, missing: type[Exception]) -> DeploymentHandle:
    """The deployment's handle, looked up off the event loop; `missing` when it is not deployed."""
    try:
        return await asyncio.to_thread(serve.get_deployment_handle, deployment_name, app_name)
    except (KeyError, RayServeException) as exc:
        raise missing(f"the application {app_name!r} (deployment {deployment_name!r}) is not deployed") from exc


def engine_silent(app_name: str, waited_s: float) -> EngineTimeout:
    return EngineTimeout(f"the {app_name} engine sent nothing for {waited_s:g} s")


async def relay(stream: DeploymentResponseGenerator, app_name: str, chunk_timeout_s: float | None = None,
                first_chunk_timeout_s: float | None = None) -> AsyncIterator[PcmChunk]:
    """The chunks of a streaming handle call, errors as the core's; a consumer that stops early
    (stop request, client gone) ends the replica's work too. Waiting longer than
    `first_chunk_timeout_s` for the first chunk (None: the caller bounds that wait, which may
    include a replica's start) or `chunk_timeout_s` for a later one ends the call with EngineTimeout."""
    timeout_s = first_chunk_timeout_s
    try:
        with as_core_errors(app_name):
            while True:
                try:
                    chunk = await asyncio.wait_for(anext(stream), timeout_s)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    stream.cancel()
                    raise engine_silent(app_name, timeout_s) from None
                timeout_s = chunk_timeout_s
                yield chunk
    except (GeneratorExit, asyncio.CancelledError):
        with contextlib.suppress(Exception):
            stream.cancel()
        raise


@dataclass(frozen=True)
class EngineRoute:
    """An engine deployment to call (application, deployment), and whether its calls go to
    replicas that have the voice loaded (its `voice_affinity`) or to the least busy one."""

    app_name: str
    deployment_name: str
    by_voice: bool = True


class EngineCalls:
    """Streaming synthesis calls to one engine deployment. The handle is looked up once;
    `handle.options(...)` is made once per routing (per voice when routing by voice, one for
    routing by load) and reused, as configuring a handle per call costs on every request."""

    def __init__(self, app_name: str, deployment_name: str):
        self.app_name = app_name
        self.deployment_name = deployment_name
        self._handle: DeploymentHandle | None = None
        self._streams: collections.OrderedDict[str | None, DeploymentHandle] = collections.OrderedDict()

    async def handle(self) -> DeploymentHandle:
        if self._handle is None:
            self._handle = await deployment_handle(self.app_name, self.deployment_name, EngineUnavailable)
        return self._handle

    async def _stream_handle(self, voice: str | None) -> DeploymentHandle:
        configured = self._streams.get(voice)
        if configured is None:
            options = {"multiplexed_model_id": voice} if voice is not None else {}
            configured = self._streams[voice] = (await self.handle()).options(stream=True, **options)
            if len(self._streams) > MAX_VOICE_HANDLES:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(voice)
        return configured

    async def synthesize(self, request: SynthesisRequest, by_voice: bool, chunk_timeout_s: float | None = None,
                         first_chunk_timeout_s: float | None = None) -> AsyncIterator[PcmChunk]:
        handle = await self._stream_handle(request.voice if by_voice else None)
        chunks = relay(handle.synthesize.remote(request), self.app_name, chunk_timeout_s, first_chunk_timeout_s)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield chunk
