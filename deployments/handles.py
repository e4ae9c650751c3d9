"""HandleEngineClient and HandleConversionClient: the core's EngineClient and ConversionClient
over Serve application handles. Only serialisable values cross: requests in, PcmChunk out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Callable

from ray.serve.handle import DeploymentHandle

from speechcore.audio.pcm import PcmChunk
from speechcore.engine_client import EngineUnavailable, ModelChangeInProgress
from speechcore.engine_types import EngineError, EngineInfo, SynthesisRequest, UnknownModel
from speechcore.rvc_requests import ConversionRequest, RvcUnavailable

from .cluster_signals import ReplicaReports
from .cold_starts import Serving, ServingChain, ServingProbe, through_cold_start
from .engine_calls import RVC_DEPLOYMENT_NAME, EngineCalls, EngineRoute, as_core_errors, deployment_handle, relay
from .rollout import RolloutBusy, RolloutFailed, ServeRollout


class HandleEngineClient:
    """Reaches the engine application `app_name`. The handle is looked up once, off the event
    loop. `describe()` answers the last description and renews one older than half of
    `describe_max_age_s` in the background, so no request waits for it (one changed by this server,
    a voice upload or a model change, is waited for; with a max age of 0 every call asks). It falls
    back to the last good one when replicas are slow to answer, and while the engine is scaled to
    zero it is not renewed (asking would start a replica). A synthesis that finds the engine at
    zero waits up to `cold_start_timeout_s` for its first audio (None: the chunk timeout; then
    EngineUnavailable: 503), and `cold_started(seconds)` hears how long that took."""

    def __init__(self, app_name: str, deployment_name: str, rollout: ServeRollout, describe_timeout_s: float,
                 describe_max_age_s: float = 1.0, chunk_timeout_s: float | None = None,
                 cold_start_timeout_s: float | None = None, cold_started: Callable[[float], None] | None = None):
        self.app_name = app_name
        self.deployment_name = deployment_name
        self.rollout = rollout
        self.describe_timeout_s = describe_timeout_s
        self.describe_max_age_s = describe_max_age_s
        self.calls = EngineCalls(app_name, deployment_name)
        self._last_info: EngineInfo | None = None
        self.chunk_timeout_s = chunk_timeout_s
        self.cold_start_timeout_s = cold_start_timeout_s
        self.cold_started = cold_started
        self._last_info_at = float("-inf")
        self._forgotten = False
        self._describing: asyncio.Task[EngineInfo] | None = None
        self._serving = ServingProbe(app_name, deployment_name)
        self._reports = ReplicaReports()

    @property
    def route(self) -> EngineRoute:
        """How calls reach the engine: by voice as its last description says (fetched at start,
        so no extra call per request); until there is one, by voice, Serve's default for
        multiplexed models."""
        return EngineRoute(self.app_name, self.deployment_name,
                           self._last_info is None or self._last_info.voice_affinity)

    async def describe(self) -> EngineInfo:
        """Concurrent callers share one call to the engine (a burst of requests asks once)."""
        if self._last_info is not None and not self._forgotten and self.describe_max_age_s > 0:
            if time.monotonic() - self._last_info_at >= self.describe_max_age_s / 2:
                self._start_describing()
            return self._last_info
        return await asyncio.shield(self._start_describing())

    def _start_describing(self) -> asyncio.Future[EngineInfo]:
        if self._describing is None or self._describing.done():
            self._describing = asyncio.ensure_future(self._describe())
            # A renewal nobody waits for may fail: its error is the next waiting caller's to see.
            self._describing.add_done_callback(lambda task: task.cancelled() or task.exception())
        return self._describing

    async def warm_up(self, attempts: int = 60) -> None:
        """Fetches the first description in the background, so that status calls and bursts have
        one to fall back on; the engine may still be starting."""
        for _ in range(attempts):
            try:
                await self.describe()
                return
            except (EngineUnavailable, EngineError):
                await asyncio.sleep(1.0)

    async def _describe(self) -> EngineInfo:
        """A replica's description; at zero, the kept one, or (with none kept) a replica's once the
        call has started one, waited for as a synthesis would."""
        at_zero = await self._at_zero()
        if at_zero and self._last_info is not None:
            return self._last_info
        timeout_s = (self.cold_start_timeout_s or self.describe_timeout_s) if at_zero else self.describe_timeout_s
        handle = await self.calls.handle()
        try:
            with as_core_errors(self.app_name):
                info: EngineInfo = await asyncio.wait_for(handle.describe.remote(), timeout_s)
        except (TimeoutError, EngineUnavailable) as exc:
            # Replicas busy (slow to answer, or at their queue limit): the last answer is still good.
            if self._last_info is not None:
                return self._last_info
            raise EngineUnavailable(f"engine application {self.app_name!r} has no replica answering yet") from exc
        self._last_info, self._last_info_at, self._forgotten = info, time.monotonic(), False
        return info

    async def is_serving(self) -> bool:
        return await self._serving.check() is not Serving.UNAVAILABLE

    @property
    def serving(self) -> ServingProbe:
        """Whether the engine has replicas (asked of Serve, answers reused briefly)."""
        return self._serving

    def forget_description(self) -> None:
        self._forgotten = True  # the last one stays the fallback while replicas are slow

    async def check_voice_files(self, files: list[str]) -> None:
        handle = await self.calls.handle()
        with as_core_errors(self.app_name):
            await handle.check_voice_files.remote(files)

    def synthesize(self, request: SynthesisRequest) -> AsyncIterator[PcmChunk]:
        stream = self.calls.synthesize(request, self.route.by_voice, self.chunk_timeout_s, first_chunk_timeout_s=None)
        return through_cold_start(stream, self.app_name, self._serving, self.chunk_timeout_s,
                                  self.cold_start_timeout_s, self.cold_started)

    async def configure(self, options: dict[str, object]) -> None:
        """Rolls `options` into the deployment's user_config on every replica, then reads every
        replica's report: where one could not apply them (a node without the model's files, a GPU
        out of memory), all go back to what they served before and EngineError says why. At zero
        replicas the options are the next replica's, and the kept description says so."""
        at_zero = await self._at_zero()
        before = await self._describe()  # at zero: the kept description, no replica started
        applied = False
        try:
            replicas = await self.rollout.update(self.app_name, self.deployment_name, {"user_config": options})
            failures = await asyncio.to_thread(self._failures, replicas, options)
            if failures:
                await self.rollout.update(self.app_name, self.deployment_name,
                                          {"user_config": {key: _options_of(before)[key] for key in options}})
                raise EngineError(f"{len(failures)} of {len(replicas)} replica(s) of the {self.app_name} engine could "
                                  f"not apply {options}: {failures[0]}; every replica is back on what it served before")
            applied = True
        except RolloutBusy as exc:
            raise ModelChangeInProgress(str(exc)) from exc
        except RolloutFailed as exc:
            raise EngineError(str(exc)) from exc
        finally:
            # At zero the kept description is all there is to answer with until a replica starts.
            self._last_info = (_with_options(before, options) if applied else before) if at_zero else None

    async def _at_zero(self) -> bool:
        return await self._serving.check() is Serving.SCALED_TO_ZERO

    def _failures(self, replicas: list[str], options: dict[str, object]) -> list[str]:
        """The errors the running `replicas` reported for `options` (a replica without a report
        for them has not said it failed)."""
        errors = []
        for replica in replicas:
            report = self._reports.read(self.app_name, replica)
            if report and report["error"] and all(report["options"].get(k) == v for k, v in options.items()):
                errors.append(report["error"])
        return errors

    async def select_model(self, model: str) -> None:
        """Checks on one replica that `model` loads, then rolls it out to every replica through
        the deployment's user_config (the declarative path), and waits until they all serve it."""
        if await self.rollout.is_updating(self.app_name):
            raise ModelChangeInProgress(f"the {self.app_name} engine is being updated")
        if self._last_info is not None and await self._at_zero():
            # No replica to load it on: the name is checked against the model list kept, the load is
            # the next replica's (one that fails keeps serving its first model and logs why).
            if model not in self._last_info.models:
                raise UnknownModel(f"{self.app_name} has the models {', '.join(self._last_info.models) or 'none'}; "
                                   f"got {model!r}")
        else:
            handle = await self.calls.handle()
            with as_core_errors(self.app_name):
                await handle.check_model.remote(model)
        await self.configure({"model": model})


_OPTION_FIELDS = {"model": "current_model", "deepspeed": "deepspeed_enabled", "lowvram": "lowvram_enabled"}
"""EngineServer's user_config options and the EngineInfo fields that say what a replica serves."""


def _options_of(info: EngineInfo) -> dict[str, object]:
    return {option: getattr(info, field) for option, field in _OPTION_FIELDS.items()}


def _with_options(info: EngineInfo, options: dict[str, object]) -> EngineInfo:
    return dataclasses.replace(info, **{_OPTION_FIELDS[option]: value for option, value in options.items()})


class HandleConversionClient:
    """The core's ConversionClient over the RVC application. Requests are routed by voice model
    (multiplexed); the converter pulls the engine's stream itself, routed as `engine_route(engine)`
    says (the engine application and its voice affinity), and `engine_serving(engine)` is the
    engine client's probe where there is one. The first converted chunk is waited for
    as the engine's own client waits for audio (the engine or the RVC deployment scaled to zero:
    up to `cold_start_timeout_s`, and `cold_started(engine, seconds)` hears it), the next ones up
    to `chunk_timeout_s` each."""

    def __init__(self, app_name: str, engine_route: Callable[[str], EngineRoute], chunk_timeout_s: float | None = None,
                 cold_start_timeout_s: float | None = None,
                 cold_started: Callable[[str, float], None] | None = None,
                 engine_serving: Callable[[str], ServingProbe | None] = lambda _engine: None):
        self.app_name = app_name
        self.engine_route = engine_route
        self.chunk_timeout_s = chunk_timeout_s
        self.cold_start_timeout_s = cold_start_timeout_s
        self.cold_started = cold_started
        self._handle: DeploymentHandle | None = None
        self._serving = ServingProbe(app_name, RVC_DEPLOYMENT_NAME)
        self.engine_serving = engine_serving
        self._engine_probes: dict[tuple[str, str], ServingProbe] = {}

    async def _get_handle(self) -> DeploymentHandle:
        if self._handle is None:
            self._handle = await deployment_handle(self.app_name, RVC_DEPLOYMENT_NAME, RvcUnavailable)
        return self._handle

    async def convert_synthesis(self, engine: str, request: SynthesisRequest,
                                conversion: ConversionRequest) -> AsyncIterator[PcmChunk]:
        handle = await self._get_handle()
        route = self.engine_route(engine)
        call = handle.options(stream=True, multiplexed_model_id=conversion.model).convert_synthesis
        stream = relay(call.remote(route, request, conversion), self.app_name, self.chunk_timeout_s,
                       first_chunk_timeout_s=None)
        serving = ServingChain(self._serving, self._engine_probe(engine, route))
        cold_started = functools.partial(self.cold_started, engine) if self.cold_started else None
        chunks = through_cold_start(stream, route.app_name, serving, self.chunk_timeout_s, self.cold_start_timeout_s,
                                    cold_started)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    def _engine_probe(self, engine: str, route: EngineRoute) -> ServingProbe:
        """The engine client's own probe (which has asked Serve before, so a question that fails
        keeps a known answer), else one of this client's."""
        if (probe := self.engine_serving(engine)) is not None:
            return probe
        target = (route.app_name, route.deployment_name)
        return self._engine_probes.get(target) or self._engine_probes.setdefault(target, ServingProbe(*target))

    async def convert_audio(self, audio: PcmChunk, conversion: ConversionRequest) -> PcmChunk:
        handle = await self._get_handle()
        with as_core_errors(self.app_name):
            return await handle.options(multiplexed_model_id=conversion.model).convert_audio.remote(audio, conversion)

    async def is_serving(self) -> bool:
        return await self._serving.check() is not Serving.UNAVAILABLE

    async def check_voice_files(self, files: list[str]) -> None:
        handle = await self._get_handle()
        with as_core_errors(self.app_name):
            await handle.check_voice_files.remote(files)
