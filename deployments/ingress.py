"""IngressServer: the `alltalk` application's HTTP ingress. It builds the core SpeechService with
handle-backed engine clients and serves the FastAPI app of the AllTalk API.
Runs in the ingress process: must not import torch or any engine."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from speechcore.api import create_app
from speechcore.config.app_args import IngressArgs
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.service import SpeechService

from .handles import HandleEngineClient
from .rollout import ServeRollout
from .stop_signal import ClusterStopSignal


class IngressServer:
    async def __init__(self, args: dict[str, Any]):
        self.args = IngressArgs.model_validate(args)
        rollout = ServeRollout()
        engines = {name: HandleEngineClient(app, f"tts-{name}", rollout, self.args.describe_timeout_s,
                                            self.args.describe_max_age_s)
                   for name, app in self.args.engines.items()}
        settings = SettingsStore(ServerPaths.at(self.args.root))
        stop_signal = ClusterStopSignal()
        self.service = SpeechService(settings, engines, self.args.engines_supported or list(engines),
                                     self.args.default_engine, self.args.narrator_concurrency,
                                     broadcast_stop=lambda: asyncio.to_thread(stop_signal.raise_stop))
        # Language models load on first use; do it now rather than in the first `auto` request.
        await asyncio.to_thread(self.service.detector.detect, "warm up")
        self._warm_ups = [asyncio.create_task(client.warm_up()) for client in engines.values()]

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.service)
