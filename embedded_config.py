"""serve_config.yaml made concrete for the machine the embedded server runs on: which engines and
whether RVC can run here, the server root, the listen address, each engine's entry with its saved
choices, GPU requests only where there are GPUs, and no more CPU replicas than the cores fit."""

from __future__ import annotations

import copy
import importlib.util
import logging
from pathlib import Path
from typing import Any

from ray.serve.schema import ServeDeploySchema

from deployments.engine_apps import engine_app_spec
from engines.registry import installed_engines
from serve_app import ENGINE_OPTIONS
from speechcore.config.app_args import EngineArgs
from speechcore.config.paths import ServerPaths

_LOGGER = logging.getLogger("alltalk_serve")


RVC_MODULES = ("torch", "transformers", "faiss", "pyworld", "parselmouth", "torchcrepe", "torchfcpe", "scipy")


def available_engines(root: Path) -> list[str]:
    """Engines the embedded server starts by default: Piper always; VITS and XTTS when coqui-tts
    is installed and `models/<engine>/` holds a model folder."""
    found = ["piper"]
    for engine in installed_engines():
        folder = ServerPaths.at(root).engine_models(engine)
        if engine != "piper" and folder.is_dir() and any(p.is_dir() for p in folder.iterdir()):
            found.append(engine)
    return found


def rvc_available(root: Path) -> bool:
    """Whether the embedded server runs RVC by default: the rvc extra is installed and
    models/rvc_voices holds a voice model."""
    if any(importlib.util.find_spec(name) is None for name in RVC_MODULES):
        return False
    folder = ServerPaths.at(root).rvc_voices
    return folder.is_dir() and any(folder.rglob("*.pth"))


def prepare_config(raw: dict[str, Any], root: Path, host: str, port: int, gpus: float,
                   engines: list[str] | None = None, saved: dict[str, dict[str, Any]] | None = None,
                   rvc: bool = True, cores: int | None = None) -> ServeDeploySchema:
    """serve_config.yaml made concrete for this machine: absolute server root in every
    application's args, each engine's entry as engine_app_spec makes it (with its `saved` choices:
    model, DeepSpeed, LowVRAM), the listen address, no GPU requests where the cluster has none, and,
    given the machine's `cores`, no more CPU replicas of an engine than its threads fit in (a second
    replica on cores the first already fills only slows both). Then only the engine applications
    of `engines` (all when None) run, with an ingress that knows just those; it also gets every
    engine's configured entry (`engine_apps`), so that an engine started later by
    /api/enginereload runs as this file configures it. The RVC application runs only with `rvc`."""
    config = copy.deepcopy(raw)
    config["http_options"] = {**config.get("http_options", {}), "host": host, "port": port}
    for app in config.get("applications", []):
        app.setdefault("args", {})["root"] = str(root)
        _fit_to_machine(app, gpus, cores)
    engine_apps = {app["args"]["engine"]: copy.deepcopy(app) for app in config.get("applications", [])
                   if "engine" in app["args"]}
    config["applications"] = [
        engine_app_spec(engine, str(root), (saved or {}).get(engine, {}), app["import_path"], app)
        if (engine := app["args"].get("engine")) else app for app in config.get("applications", [])]
    if not rvc:
        for app in config.get("applications", []):
            rvc_app = app.get("args", {}).pop("rvc_app", None)
            config["applications"] = [a for a in config["applications"] if a["name"] != rvc_app]
    if engines is not None:
        config["applications"] = [app for app in config.get("applications", [])
                                  if "engine" not in app["args"] or app["args"]["engine"] in engines]
    for app in config["applications"]:
        args = app["args"]
        if "engines" not in args:
            continue
        args["engine_apps"] = engine_apps
        if engines is not None:
            args["engines"] = {name: target for name, target in args["engines"].items() if name in engines}
            if args.get("default_engine") not in args["engines"]:
                args["default_engine"] = next(iter(args["engines"]))
    return ServeDeploySchema.model_validate(config)


def _fit_to_machine(app: dict[str, Any], gpus: float, cores: int | None) -> None:
    """One application's deployments with the GPU requests and replica caps of prepare_config."""
    for deployment in app.get("deployments", []):
        check_batch_fits(app, deployment)
        actor = deployment.get("ray_actor_options") or {}
        if actor.get("num_gpus") and not gpus:
            _LOGGER.info("no GPU here: %s/%s runs on the CPU", app["name"], deployment["name"])
            actor["num_gpus"] = 0
        autoscaling = deployment.get("autoscaling_config")
        if cores and "engine" in app["args"] and not actor.get("num_gpus") and isinstance(autoscaling, dict):
            threads = EngineArgs.model_validate(app["args"]).threads
            fit = max(1, cores // threads, autoscaling.get("min_replicas", 1))
            if autoscaling.get("max_replicas", 1) > fit:
                _LOGGER.info("%s/%s: at most %d replica(s) on %d cores", app["name"], deployment["name"],
                             fit, cores)
                autoscaling["max_replicas"] = fit


def check_batch_fits(app: dict[str, Any], deployment: dict[str, Any]) -> None:
    """An engine replica batches only the requests Serve hands it at once, so its
    max_ongoing_requests must be at least its max_batch."""
    if "engine" not in app.get("args", {}):
        return
    batch = EngineArgs.model_validate(app["args"]).max_batch
    ongoing = deployment.get("max_ongoing_requests", ENGINE_OPTIONS["max_ongoing_requests"])
    if batch > ongoing:
        raise ValueError(f"{app['name']}/{deployment['name']}: max_ongoing_requests ({ongoing}) is below the "
                         f"engine's max_batch ({batch}); a replica could never fill its batch")


def required_cpus(config: ServeDeploySchema) -> float:
    """Logical CPUs the deployments ask for at their largest replica counts."""
    total = 0.0
    for app in config.applications:
        for deployment in app.deployments:
            options = deployment.ray_actor_options
            cpus = options.num_cpus if options and options.num_cpus is not None else 1
            replicas = deployment.num_replicas if isinstance(deployment.num_replicas, int) else 1
            autoscaling = deployment.autoscaling_config
            if isinstance(autoscaling, dict):
                replicas = max(autoscaling.get("max_replicas", 1), autoscaling.get("min_replicas", 1))
            total += cpus * replicas
    return total
