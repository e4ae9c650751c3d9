"""ServeRollout: changes to a running deployment made through Serve's declarative API (what
`serve deploy` does): the controller's current config of every application, with one
deployment's options changed, is deployed again; Serve then updates the replicas (in place for
`user_config`, replacing them a few at a time for other options) while they keep serving. Reading
the config and deploying it again happen under a lock the whole cluster shares, so that changes
made at once through two ingress replicas both take effect."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from ray.serve.schema import ServeDeploySchema

from .cluster_lock import ClusterLock, Hold, LockLost, LockTimeout
from .cluster_signals import ReplicaReports
from .metrics import RolloutMetrics
from .serve_control import deploy_config, message_reason, serve_details

_LOGGER = logging.getLogger("ray.serve")
LOCK_TTL_S = 60.0
"""How long a rollout's hold on the config lock lasts if its process dies while holding it (reading
and deploying the config takes seconds; waiting for replicas happens after the lock is left)."""
LOCK_WAIT_S = 120.0
"""How long a change waits for another one's hold on the config lock."""


class RolloutBusy(RuntimeError):
    """The deployment is already being updated."""


class RolloutFailed(RuntimeError):
    """The update did not reach a healthy, running state in time."""


def _state(value: Any) -> str:
    return str(getattr(value, "value", value) or "").rsplit(".", 1)[-1]


def _deployment_view(deployment: dict[str, Any], report_of: Callable[[str], dict[str, Any] | None]
                     ) -> dict[str, Any]:
    """The deployment's state and replicas by state; for an engine, where its running replicas
    compute (`placements`: ReplicaPlacement's fields by replica id), the devices they use and their
    warnings (`report_of(replica_id)`: the replica's report, ReplicaReports)."""
    replicas: dict[str, int] = {}
    placements: dict[str, dict[str, Any]] = {}
    for replica in deployment.get("replicas", []):
        state = _state(replica.get("state"))
        replicas[state] = replicas.get(state, 0) + 1
        replica_id = str(replica.get("replica_id"))
        if state == "RUNNING" and (placement := (report_of(replica_id) or {}).get("placement")):
            placements[replica_id] = placement
    autoscaling = (deployment.get("deployment_config") or {}).get("autoscaling_config") or {}
    message = deployment.get("message", "")
    view = {"name": deployment.get("name"), "status": _state(deployment.get("status")), "message": message,
            "reason": message_reason(message), "target_replicas": deployment.get("target_num_replicas"),
            "replicas": replicas}
    if placements:
        view["devices"] = dict(sorted(collections.Counter(p["device"] for p in placements.values()).items()))
        view["warnings"] = sorted({p["warning"] for p in placements.values() if p.get("warning")})
        view["placements"] = placements
    if autoscaling:
        view["autoscaling"] = {"min_replicas": autoscaling.get("min_replicas"),
                               "max_replicas": autoscaling.get("max_replicas")}
    return view


class ServeRollout:
    def __init__(self, timeout_s: float = 900.0, poll_s: float = 0.2, metrics: RolloutMetrics | None = None,
                 lock: ClusterLock | None = None):
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.metrics = metrics
        self.lock = lock or ClusterLock("serve-config", LOCK_TTL_S)
        self.reports = ReplicaReports()

    async def update(self, app: str, deployment: str, options: dict[str, Any]) -> list[str]:
        """Sets deployment options (`user_config` keys are merged), waits until every replica
        runs with them and returns the ids of the running replicas."""
        with self._measured(app):
            return await asyncio.to_thread(self._update, app, deployment, options)

    async def deploy_app(self, app_config: dict[str, Any]) -> None:
        """Adds (or replaces) one application beside the running ones and waits until it runs."""
        with self._measured(app_config["name"]):
            await asyncio.to_thread(self._deploy_app, app_config)

    @contextlib.contextmanager
    def _measured(self, app: str) -> Iterator[None]:
        started, outcome = time.monotonic(), "failed"
        try:
            yield
            outcome = "done"
        except RolloutBusy:
            outcome = "busy"
            raise
        finally:
            seconds = time.monotonic() - started
            _LOGGER.info("rollout of %s %s after %.1f s", app, outcome, seconds)
            if self.metrics:
                self.metrics.finished(app, outcome, seconds)

    async def listen_host(self) -> str:
        """The address Serve's HTTP proxies listen on (http_options.host)."""
        details = await asyncio.to_thread(serve_details)
        return str((details.get("http_options") or {}).get("host", ""))

    async def applications(self) -> list[dict[str, Any]]:
        """Every Serve application with its deployments: state, message, replicas by state and the
        target count (with the autoscaling range where there is one)."""
        return await asyncio.to_thread(self._applications)

    def _applications(self) -> list[dict[str, Any]]:
        details = serve_details()
        return [{"name": name, "status": _state(app.get("status")), "message": app.get("message", ""),
                 "deployments": [_deployment_view(d, functools.partial(self.reports.read, name))
                                 for d in app.get("deployments", {}).values()]}
                for name, app in details.get("applications", {}).items()]

    async def is_updating(self, app: str) -> bool:
        return await asyncio.to_thread(self._is_updating, app)

    @staticmethod
    def _deploying(app_details: dict[str, Any]) -> bool:
        return str(app_details.get("status", "")).endswith("DEPLOYING")

    def _is_updating(self, app: str) -> bool:
        return self._deploying(serve_details()["applications"].get(app, {}))

    @contextlib.contextmanager
    def _config_lock(self) -> Iterator[Hold]:
        """The cluster-wide lock on Serve's config; RolloutBusy when another change holds it too
        long or this one outlived its lease."""
        try:
            with self.lock.held(LOCK_WAIT_S) as hold:
                yield hold
        except (LockTimeout, LockLost) as exc:
            raise RolloutBusy(str(exc)) from exc

    def _update(self, app: str, deployment: str, options: dict[str, Any]) -> list[str]:
        with self._config_lock() as hold:
            details = serve_details()
            apps = details["applications"]
            if app not in apps:
                raise RolloutFailed(f"application {app!r} is not deployed")
            if self._deploying(apps[app]):
                raise RolloutBusy(f"application {app!r} is already being updated")
            configs = [copy.deepcopy(a["deployed_app_config"]) for a in apps.values() if a.get("deployed_app_config")]
            target = next(c for c in configs if c["name"] == app)
            entry = next((d for d in target.setdefault("deployments", []) if d["name"] == deployment), None)
            if entry is None:
                entry = {"name": deployment}
                target["deployments"].append(entry)
            for key, value in options.items():
                if key == "user_config":  # merged over what the replicas run (a builder may have set it)
                    running = (apps[app].get("deployments", {}).get(deployment, {}).get("deployment_config") or {}
                               ).get("user_config")
                    entry["user_config"] = {**(entry.get("user_config") or running or {}), **value}
                else:
                    entry[key] = value
            _LOGGER.info("rolling out %s/%s: %s", app, deployment, options)
            before = self._submit(details, configs, app, hold)
        return self._wait(app, deployment, before)

    def _deploy_app(self, app_config: dict[str, Any]) -> None:
        name = app_config["name"]
        with self._config_lock() as hold:
            details = serve_details()
            configs = [copy.deepcopy(a["deployed_app_config"]) for n, a in details["applications"].items()
                       if a.get("deployed_app_config") and n != name]
            _LOGGER.info("deploying application %s", name)
            before = self._submit(details, [*configs, app_config], name, hold)
        self._wait(name, None, before)

    @staticmethod
    def _submit(details: dict[str, Any], applications: list[dict[str, Any]], app: str, hold: Hold) -> float:
        """Deploys `applications` (every application Serve should run) if the lock is still this
        change's; returns when `app` was last deployed before, for _wait."""
        config = ServeDeploySchema.model_validate({"applications": applications,
                                                   "http_options": details.get("http_options"),
                                                   "proxy_location": details.get("proxy_location")})
        before = details["applications"].get(app, {}).get("last_deployed_time_s", 0.0)
        hold.check()
        deploy_config(config)
        return before

    def _wait(self, app: str, deployment: str | None, deployed_before: float) -> list[str]:
        """Waits until `app` (and its `deployment`, when named) settles on the config deployed after
        `deployed_before`; returns the ids of the deployment's running replicas."""
        name = f"{app}/{deployment}" if deployment else app
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            details = serve_details()["applications"].get(app, {})
            state = details.get("deployments", {}).get(deployment, {}) if deployment else {}
            status = str(state.get("status", ""))
            # Autoscaling may act meanwhile; a deployment settles once its config update completed.
            settled = deployment is None or (status.endswith(("HEALTHY", "UPSCALING", "DOWNSCALING"))
                                             and not str(state.get("status_trigger")).endswith("CONFIG_UPDATE_STARTED"))
            if (
                details.get("last_deployed_time_s", 0) > deployed_before
                and str(details.get("status")).endswith("RUNNING")
                and settled
            ):
                return [r["replica_id"] for r in state.get("replicas", []) if _state(r.get("state")) == "RUNNING"]
            if str(details.get("status", "")).endswith("DEPLOY_FAILED") or status.endswith("DEPLOY_FAILED"):
                raise RolloutFailed(f"{name}: {details.get('message') or state.get('message')}")
            time.sleep(self.poll_s)
        raise RolloutFailed(f"{name} did not settle within {self.timeout_s:.0f} s")
