"""IngressServer: the `alltalk` application's HTTP ingress. It builds the core SpeechService with
handle-backed engine clients and serves the FastAPI app of the AllTalk API.
Runs in the ingress process: must not import torch or any engine."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
from typing import Any

from fastapi import FastAPI
from ray import serve

from speechcore.api import create_app
from speechcore.api.generations import GenerationsInFlight
from speechcore.config.app_args import IngressArgs
from speechcore.config.engine_choices import saved_engine_choices
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.service import SpeechService

from .cluster_signals import ClusterDrain, ClusterStopSignal
from .cold_starts import ServingProbe
from .engine_apps import engine_app_spec
from .engine_calls import EngineRoute, engine_deployment_name
from .handles import HandleConversionClient, HandleEngineClient
from .metrics import IngressMetrics, RolloutMetrics
from .rollout import ServeRollout

_LOGGER = logging.getLogger("ray.serve")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class IngressServer:
    async def __init__(self, args: dict[str, Any]):
        self.args = IngressArgs.model_validate(args)
        rollout = ServeRollout(metrics=RolloutMetrics())
        self.rollout, self.metrics = rollout, IngressMetrics()
        engines = {name: self._engine_client(name, app) for name, app in self.args.engines.items()}
        settings = SettingsStore(ServerPaths.at(self.args.root))
        stop_signal = ClusterStopSignal()
        converter = HandleConversionClient(
            self.args.rvc_app, self._engine_route, chunk_timeout_s=self.args.engine_chunk_timeout_s,
            cold_start_timeout_s=self.args.cold_start_timeout_s, cold_started=self.metrics.cold_started,
            engine_serving=self._engine_serving,
        ) if self.args.rvc_app else None
        self.service = SpeechService(settings, engines, self.args.engines_supported or list(engines),
                                     self.args.default_engine, self.args.narrator_concurrency,
                                     broadcast_stop=lambda: asyncio.to_thread(stop_signal.raise_stop),
                                     deploy_engine=self.deploy_engine if self.args.engine_import_path else None,
                                     converter=converter, telemetry=self.metrics,
                                     engines_not_installed=self.args.engines_not_installed)
        # Language models load on first use; do it now rather than in the first `auto` request.
        await asyncio.to_thread(self.service.detector.detect, "warm up")
        self._warm_ups = [asyncio.create_task(client.warm_up()) for client in engines.values()]
        self.generations = GenerationsInFlight()
        self.keys = self.args.access.keys(os.environ)
        await self._warn_if_open(rollout)
        self._drain = asyncio.create_task(ClusterDrain().follow(serve.get_replica_context().replica_id.unique_id,
                                                                self.generations))

    def _engine_route(self, engine: str) -> EngineRoute:
        """How the RVC replica reaches `engine`: as the ingress does (its live client's route)."""
        client = self.service.engines.live.get(engine)
        if isinstance(client, HandleEngineClient):
            return client.route
        return EngineRoute(engine, engine_deployment_name(engine))

    def _engine_serving(self, engine: str) -> ServingProbe | None:
        client = self.service.engines.live.get(engine)
        return client.serving if isinstance(client, HandleEngineClient) else None

    async def deploy_engine(self, engine: str) -> HandleEngineClient:
        """Deploys the application of an engine that is not live, as its entry in the server's
        configuration says (`engine_apps`; the builder's defaults without one), with the choices
        saved for it (engine_app_spec), and returns a client for it."""
        if engine not in self.args.engine_apps:
            _LOGGER.warning("no configuration for the %s engine: deploying it with its builder's defaults", engine)
        saved = await asyncio.to_thread(saved_engine_choices, ServerPaths.at(self.args.root), engine)
        app = engine_app_spec(engine, self.args.root, saved, self.args.engine_import_path,
                              self.args.engine_apps.get(engine))
        await self.rollout.deploy_app(app)
        client = self._engine_client(engine, app["name"])
        await client.warm_up()
        return client

    def _engine_client(self, engine: str, app_name: str) -> HandleEngineClient:
        return HandleEngineClient(app_name, engine_deployment_name(engine), self.rollout,
                                  describe_timeout_s=self.args.describe_timeout_s,
                                  describe_max_age_s=self.args.describe_max_age_s,
                                  chunk_timeout_s=self.args.engine_chunk_timeout_s,
                                  cold_start_timeout_s=self.args.cold_start_timeout_s,
                                  cold_started=functools.partial(self.metrics.cold_started, engine))

    async def _warn_if_open(self, rollout: ServeRollout) -> None:
        """One line at start when anyone who can reach the port may use the API."""
        host = await rollout.listen_host()
        if self.keys[0] or host == "localhost" or _is_loopback(host):
            return
        _LOGGER.warning("the API listens on %s without API keys: anyone who can reach the port may use it, and "
                        "with cors_origins %s any web page they open may too; set ALLTALK_API_KEYS (README: "
                        "Exposing it)", host, self.args.access.cors_origins)

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Serve's logger: the request lines land in the replica's log file beside Serve's own.
        return create_app(self.service, self.args.access, self.keys,
                          self.args.retention_check_s, request_logger=logging.getLogger("ray.serve"),
                          generations=self.generations, deployments=self.rollout.applications, jobs=self.args.jobs,
                          voices=self.args.voices)
