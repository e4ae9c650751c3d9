"""A fake engine for the Serve tests of what the real engines cannot show on this CPU machine: it
says it has CUDA, DeepSpeed and LowVRAM (so /api/deepspeed and /api/lowvramsetting roll out
through Serve for real), and its voice `hang` never finishes a step (so the ingress's chunk timeout
and the replica's health check can be seen). Its model `unloadable` passes the check a rollout makes
on one replica and then fails to load on every replica (as a model whose files are missing on some
nodes would). Its audio is a tone, 0.05 s per character.

`build_fake_engine_app` is a Serve builder: the tests deploy it by import path, declaratively, as
serve_config.yaml deploys the real engines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from ray import serve
from ray.serve import Application

import serve_app
from deployments.engine_server import EngineServer
from engines.base import NO_HOOKS, EngineOptions, StepHooks, TTSEngine
from speechcore.audio.pcm import PcmChunk
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import (
    EngineCapabilities,
    EngineError,
    EngineInfo,
    SynthesisRequest,
    UnknownModel,
    UnknownVoice,
)

MODELS = ("fake", "unloadable")
HANG_S = 60.0
"""How long a step of the `hang` voice takes: far longer than any timeout the tests set."""


class GpuCapableEngine(TTSEngine):
    name = "fake"

    def __init__(self) -> None:
        self.deepspeed = self.lowvram = False
        self.model = "fake"

    @classmethod
    def create(cls, paths: ServerPaths, options: EngineOptions, hooks: StepHooks = NO_HOOKS) -> "GpuCapableEngine":
        return cls()

    def info(self) -> EngineInfo:
        return EngineInfo(
            engine="piper", manufacturer_name="Fake", audio_format="wav", models=list(MODELS), current_model=self.model,
            voices=["tone", "hang"], default_voice="tone", deepspeed_enabled=self.deepspeed,
            lowvram_enabled=self.lowvram,
            capabilities=EngineCapabilities(streaming=True, lowvram=True, deepspeed=True, deepspeed_available=True,
                                            cuda=True))

    def load_voice(self, voice: str) -> str:
        if voice not in ("tone", "hang"):
            raise UnknownVoice(f"Voice {voice!r} is not a fake voice")
        return voice

    def synthesize(self, voice: str, request: SynthesisRequest) -> Iterator[PcmChunk]:
        if voice == "hang":
            time.sleep(HANG_S)
        t = np.arange(int(0.05 * len(request.text) * 16000)) / 16000
        yield PcmChunk.from_float(0.3 * np.sin(2 * np.pi * 440 * t), 16000)

    def configure(self, deepspeed: bool, lowvram: bool) -> None:
        self.deepspeed, self.lowvram = deepspeed, lowvram

    def check_model(self, model: str) -> None:
        if model not in MODELS:
            raise UnknownModel(f"the fake engine's models are {MODELS}; got {model!r}")

    def select_model(self, model: str | None) -> None:
        if model is None:
            return
        self.check_model(model)
        if model == "unloadable":
            raise EngineError("the files of 'unloadable' are not on this node")
        self.model = model


def build_fake_engine_app(args: dict[str, Any]) -> Application:
    """The fake engine as an engine application (deployment `tts-piper`, in the shape of
    serve_app.build_engine_app); `health_check_period_s` in args sets how often Serve probes its
    replicas."""
    args = dict(args)
    period = args.pop("health_check_period_s", 10.0)
    options = {**serve_app.ENGINE_OPTIONS, "ray_actor_options": {"num_cpus": 0}, "health_check_period_s": period,
               "health_check_timeout_s": 5, "graceful_shutdown_timeout_s": 5}
    served = serve.deployment(EngineServer, name="tts-piper", **options).bind(args, engine_cls=GpuCapableEngine)
    return serve_app.reached_by_handle(served)
