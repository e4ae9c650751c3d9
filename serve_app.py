"""Builders of the Serve applications.

`serve_config.yaml` names `serve_app:build_ingress_app` and `serve_app:build_engine_app` as import
paths; `serve deploy serve_config.yaml` and the embedded server (`alltalk-serve run`, embedded.py)
both go through them. This is the only module that knows Serve deployment options.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from deployments.engine_apps import engine_user_config
from deployments.engine_calls import RVC_DEPLOYMENT_NAME, engine_deployment_name
from deployments.engine_server import EngineServer
from deployments.handle_only_ingress import HandleOnlyIngress
from deployments.ingress import IngressServer
from deployments.routing import LeastInFlightRouter
from engines.registry import ENGINE_CLASSES, ENGINE_EXTRAS, installed_engines
from speechcore.config.app_args import EngineArgs, IngressArgs, RvcArgs
from speechcore.config.engine_choices import saved_engine_choices
from speechcore.config.paths import ServerPaths

# Code defaults; serve_config.yaml overrides any of them per deployment name.
INGRESS_OPTIONS: dict[str, Any] = {"max_ongoing_requests": 256, "graceful_shutdown_timeout_s": 20,
                                   "ray_actor_options": {"num_cpus": 0.25}}
INGRESS_IMPORT_PATH = "serve_app:build_ingress_app"
ENGINE_IMPORT_PATH = "serve_app:build_engine_app"
ENGINE_OPTIONS: dict[str, Any] = {
    "max_ongoing_requests": 4,
    "max_queued_requests": 64,
    "graceful_shutdown_timeout_s": 120,
    "ray_actor_options": {"num_cpus": 1},
    "request_router_config": {
        "request_router_class": f"{LeastInFlightRouter.__module__}:{LeastInFlightRouter.__name__}"},
}

HANDLE_ONLY_INGRESS_OPTIONS: dict[str, Any] = {
    "name": "entry",
    "autoscaling_config": {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1},
    "ray_actor_options": {"num_cpus": 0},
}
"""The ingress of the engine and RVC applications (deployments/handle_only_ingress.py): never
called, so no replica."""


def reached_by_handle(served: Application) -> Application:
    """An application of `served` whose callers take `served`'s deployment handle."""
    return serve.deployment(HandleOnlyIngress, **HANDLE_ONLY_INGRESS_OPTIONS).bind(served)


def offered_engines(live: list[str]) -> tuple[list[str], dict[str, str]]:
    """(engines the ingress offers, engines it does not with the extra each needs): the live ones,
    and those it can start on demand because their extra is installed where it is built."""
    can_run = set(live) | set(installed_engines())
    return ([name for name in ENGINE_CLASSES if name in can_run],
            {name: ENGINE_EXTRAS[name] for name in ENGINE_CLASSES if name not in can_run})


def build_ingress_app(args: dict[str, Any]) -> Application:
    """The `alltalk` application: the HTTP ingress (deployment `ingress`)."""
    supported, not_installed = offered_engines(list(args.get("engines", {})))
    args = {"engines_supported": supported, "engines_not_installed": not_installed,
            "engine_import_path": ENGINE_IMPORT_PATH, **args}
    IngressArgs.model_validate(args)
    deployment = serve.deployment(serve.ingress()(IngressServer), name="ingress", **INGRESS_OPTIONS)
    return deployment.bind(args)


def build_engine_app(args: dict[str, Any]) -> Application:
    """An engine application (deployment `tts-<engine>`, under a HandleOnlyIngress), serving the
    choices saved over the API (model, DeepSpeed, LowVRAM) unless the deployment's config sets a
    user_config of its own, as the launcher's does (it merges them: engine_apps.engine_app_spec)."""
    engine_args = EngineArgs.model_validate(args)
    if engine_args.engine not in ENGINE_CLASSES:
        raise ValueError(f"unknown engine {engine_args.engine!r}; this build has {', '.join(ENGINE_CLASSES)}")
    saved = saved_engine_choices(ServerPaths.at(engine_args.root), engine_args.engine)
    deployment = serve.deployment(EngineServer, name=engine_deployment_name(engine_args.engine), **ENGINE_OPTIONS,
                                  user_config=engine_user_config(None, saved))
    return reached_by_handle(deployment.bind(args))


def build_rvc_app(args: dict[str, Any]) -> Application:
    """The `rvc` application: voice conversion (deployment `rvc`, under a HandleOnlyIngress). Needs
    the rvc extra (torch)."""
    from deployments.rvc_server import RvcServer

    RvcArgs.model_validate(args)
    deployment = serve.deployment(RvcServer, name=RVC_DEPLOYMENT_NAME, **ENGINE_OPTIONS)
    return reached_by_handle(deployment.bind(args))
