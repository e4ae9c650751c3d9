"""The embedded server: a local Ray (or a running cluster joined), Serve, and serve_config.yaml
deployed through Serve's declarative API as `serve run` does, made concrete for this machine; then
a clean stop (drain, Serve, Ray). `alltalk-serve run` (cli.py) is its command; the applications
themselves come from serve_app's builders."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from ray import serve
from ray.serve.schema import ServeApplicationSchema

from deployments.cluster_signals import DRAIN_POLL_S, ClusterDrain, ClusterStopSignal
from deployments.serve_control import deploy_config, message_reason
from embedded_config import available_engines, prepare_config, required_cpus, rvc_available
from embedded_proxy import DEFAULT_PROXY, HAProxyFolder, environment, proxy_env
from serve_app import HANDLE_ONLY_INGRESS_OPTIONS, INGRESS_IMPORT_PATH, INGRESS_OPTIONS
from speechcore.config.alltalk import AllTalkConfig, read_json_model
from speechcore.config.engine_choices import saved_engine_choices
from speechcore.config.paths import ServerPaths

PROJECT_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PROJECT_DIR / "serve_config.yaml"
_LOGGER = logging.getLogger("alltalk_serve")
EMBEDDED_RAY_ENV = {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5", "RAY_max_direct_call_object_size": str(4 << 20),
                    "MALLOC_CONF": "narenas:1,tcache:false"}
"""Environment of the embedded server's local Ray (a variable already set wins). Serve's controller
wakes every 0.1 s by default, about 4% of a core on a laptop that also synthesizes; every 0.5 s
still scales and rolls out within a second. Audio chunks up to 4 MiB (a sentence of Piper audio is
100-500 KB) travel inside the reply from engine to ingress instead of through the shared-memory
object store, which costs a raylet round trip per chunk. MALLOC_CONF is read by the jemalloc that
Ray preloads into its raylet and GCS (Python workers use glibc's malloc and ignore it): with
jemalloc's defaults, an arena per CPU and a cache per thread, an idle raylet grew from 10 to
14.5 MiB in its first 12 minutes and kept climbing under load; with one arena and no thread caches
it stays at 7.2 MiB."""


def _wait_until_running(names: list[str], timeout_s: float, report_every_s: float = 10.0) -> None:
    """Waits until every application runs, logging each change of state (replicas starting and
    running per deployment, so a model that takes minutes to load shows progress)."""
    started = time.monotonic()
    deadline = started + timeout_s
    last, last_report = "", started
    while time.monotonic() < deadline:
        statuses = serve.status().applications
        failed = [n for n in names if n in statuses and statuses[n].status == "DEPLOY_FAILED"]
        if failed:
            raise RuntimeError("; ".join(_failure(n, statuses[n]) for n in failed))
        progress = "; ".join(_app_progress(name, statuses.get(name)) for name in names)
        now = time.monotonic()
        if progress != last or now - last_report >= report_every_s:
            _LOGGER.info("[%3.0f s] %s", now - started, progress)
            last, last_report = progress, now
        if all(name in statuses and statuses[name].status == "RUNNING" for name in names):
            return
        time.sleep(0.5)
    raise TimeoutError(f"applications not running after {timeout_s:.0f} s: {last}")


def _failure(name: str, status: Any) -> str:
    """`vits: Failed to update the deployments ['tts-vits'] (tts-vits: EngineError: device 'cuda' was
    requested but ...)`: the application's message, with each failed deployment's own reason (the
    last line of its replica's error; Serve's application message names the deployment only)."""
    reasons = [f"{deployment}: {message_reason(state.message)}" for deployment, state in status.deployments.items()
               if str(getattr(state.status, "value", state.status)) in ("UNHEALTHY", "DEPLOY_FAILED") and state.message]
    return f"{name}: {status.message}" + (f" ({'; '.join(reasons)})" if reasons else "")


def _app_progress(name: str, status: Any) -> str:
    """`piper RUNNING (tts-piper 1/1)`: the application's state and its replicas running / wanted."""
    if status is None:
        return f"{name} NOT_STARTED"
    replicas = []
    for deployment, state in status.deployments.items():
        counts = {str(getattr(k, "value", k)): v for k, v in state.replica_states.items()}
        if deployment != HANDLE_ONLY_INGRESS_OPTIONS["name"]:  # it runs no replica
            replicas.append(f"{deployment} {counts.get('RUNNING', 0)}/{sum(counts.values())}")
    return f"{name} {status.status.value}" + (f" ({', '.join(replicas)})" if replicas else "")


@dataclass(frozen=True)
class EmbeddedServer:
    port: int
    ingress_app: str
    drain_timeout_s: float
    """How long a stop waits for generations in flight: the ingress deployment's
    `graceful_shutdown_timeout_s` (serve_config.yaml), the time Serve gives an ingress replica
    that it stops."""
    ray_watch: "LocalRayWatch | None" = None
    proxy_files: HAProxyFolder | None = None
    """The folder of HAProxy's files (config, sockets), removed at the stop."""


def start_embedded(config_path: Path, root: Path, host: str, port: int | None, engines: list[str] | None = None,
                   num_cpus: int | None = None, timeout_s: float = 300, rvc: bool | None = None,
                   metrics_port: int | None = None, dashboard_port: int | None = None, address: str | None = None,
                   on_ray_started: Callable[[], None] | None = None, exit_if_ray_stops: bool = False,
                   proxy: str = DEFAULT_PROXY) -> EmbeddedServer:
    """Starts a local Ray (or joins the cluster at `address`) and Serve, deploys the config (with
    the `engines` given, or those that `available_engines` finds; RVC when `rvc`, or when
    `rvc_available` and `rvc` is None), waits until every application runs. The caller stops
    everything with `stop_embedded(server)`.

    A new local Ray every time unless `address` is given: never whatever cluster this machine
    knew last (RAY_ADDRESS, or the file a past `ray start` left). `on_ray_started` runs as soon as
    Ray is up: Ray takes the process's SIGTERM and SIGINT handlers in ray.init, and a caller that
    handles them itself takes them back there.

    `metrics_port`: where Ray's Prometheus endpoint listens (`/metrics`; a free port when None, see
    Ray's service discovery file). `dashboard_port`: run the Ray dashboard there (token auth, the
    token in ~/.ray/auth_token); None leaves it off, which saves a laptop a process.
    `exit_if_ray_stops`: a server process of its own ends itself should its local Ray's core
    processes die under it (LocalRayWatch). `proxy`: Serve's HTTP front of a local Ray (PROXIES; a
    joined cluster runs the one its nodes' environment chose)."""
    import ray

    paths = ServerPaths.at(root)
    port = port or read_json_model(paths.config_file, AllTalkConfig).api_def.api_port_number
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    # Replicas and the build task import this project: put it on their path.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), os.environ.get("PYTHONPATH")]))
    for name, value in EMBEDDED_RAY_ENV.items():
        os.environ.setdefault(name, value)
    proxy_files = None
    try:
        engines = engines or available_engines(paths.root)
        rvc = rvc_available(paths.root) if rvc is None else rvc
        _LOGGER.info("engines: %s; RVC %s", ", ".join(engines), "on" if rvc else "off")
        saved = {engine: saved_engine_choices(paths, engine) for engine in engines}
        planned = prepare_config(raw, paths.root, host, port, 0, engines, saved, rvc)
        if address:
            wait_for_cluster(address, CLUSTER_CONNECT_TIMEOUT_S)
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            # Logical CPUs are scheduling tokens: give Ray enough for every replica even on a small machine.
            num_cpus = num_cpus or max(os.cpu_count() or 1, math.ceil(required_cpus(planned)))
            if proxy == "haproxy":
                proxy_files = HAProxyFolder()
            files = proxy_files.path if proxy_files else None
            with environment(proxy_env(proxy, files, os.environ, host)):  # Ray's processes keep it
                ray.init(address="local", num_cpus=num_cpus, logging_level=logging.WARNING,
                         _metrics_export_port=metrics_port, include_dashboard=dashboard_port is not None,
                         dashboard_port=dashboard_port, dashboard_host=host)
        if on_ray_started:
            on_ray_started()
        ClusterDrain().clear()  # a joined cluster may keep the drain of an earlier server that stopped
        config = prepare_config(raw, paths.root, host, port, ray.cluster_resources().get("GPU", 0), engines, saved,
                                rvc, None if address else os.cpu_count())
        serve.start(http_options={"host": host, "port": port})
        deploy_config(config)
        _wait_until_running([app.name for app in config.applications], timeout_s)
        ingress = next(app for app in config.applications if app.import_path == INGRESS_IMPORT_PATH)
        watch = LocalRayWatch(proxy_files) if exit_if_ray_stops and not address else None
    except BaseException:
        if proxy_files:  # the caller stops Ray, and nothing would remove it
            proxy_files.remove()
        raise
    return EmbeddedServer(port, ingress.name, ingress_drain_timeout(ingress), watch, proxy_files)


CLUSTER_CONNECT_TIMEOUT_S = 15.0


class LocalRayWatch:
    """Ends this process, with exit status 1, as soon as the local Ray's GCS or raylet stops under
    the server (killed by hand, out of memory): nothing can be served or stopped cleanly without
    them, and Ray's client would wait a minute for a GCS that is gone. Ray's other processes are
    killed first and HAProxy's folder (`files`) removed, so nothing is left behind. `stop()` before
    stopping Ray on purpose."""

    CORE = ("gcs_server", "raylet")

    def __init__(self, files: HAProxyFolder | None = None, poll_s: float = 0.5):
        self._files = files
        self._core = [(proc, proc.name()) for proc in psutil.Process().children(recursive=True)
                      if proc.name() in self.CORE]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(poll_s,), name="ray-watch", daemon=True)
        if self._core:
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self, poll_s: float) -> None:
        while not self._stopped.wait(poll_s):
            for proc, name in self._core:
                if not _alive(proc) and not self._stopped.is_set():
                    _LOGGER.error("Ray's %s (pid %d) has stopped under the server (killed, or out of memory?): "
                                  "stopping at once, exit status 1", name, proc.pid)
                    for child in psutil.Process().children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            child.kill()
                    if self._files:
                        self._files.remove()
                    logging.shutdown()
                    os._exit(1)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_for_cluster(address: str, timeout_s: float) -> None:
    """Raises ConnectionError when nothing answers at the Ray cluster `address` (host:port of its
    GCS) within `timeout_s`; ray.init would wait for it forever."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=2).close()
            return
        except (OSError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise ConnectionError(f"no Ray cluster answers at {address} (waited {timeout_s:.0f} s: {exc}); "
                                      "start it, or leave out --address to run a local one") from None
            time.sleep(0.5)


def ingress_drain_timeout(ingress: ServeApplicationSchema) -> float:
    """The ingress deployment's graceful_shutdown_timeout_s (the code default when unset)."""
    for deployment in ingress.deployments:
        timeout = deployment.graceful_shutdown_timeout_s  # unset: Serve's DEFAULT marker
        if deployment.name == "ingress" and isinstance(timeout, (int, float)):
            return float(timeout)
    return INGRESS_OPTIONS["graceful_shutdown_timeout_s"]


STOP_GRACE_S = 5.0
"""After the drain time, how long a stop waits for the generations it stopped to end cleanly."""
FETCH_GRACE_S = 1.0
"""After the last generation, how long a stop still serves files: a client fetches the file it
was just told about (the AllTalk flow is POST, then GET of the file)."""


def stop_embedded(server: EmbeddedServer | None = None, drain_first: bool = True) -> None:
    """Stops Serve and Ray and removes the `server`'s HAProxy files. Given the `server` it started,
    drains first (see drain) unless not `drain_first`."""
    import ray

    if server and server.ray_watch:
        server.ray_watch.stop()
    try:
        if server and drain_first and server.drain_timeout_s > 0 and ray.is_initialized():
            drain(server.ingress_app, server.drain_timeout_s)
        serve.shutdown()
        if ray.is_initialized():
            ClusterDrain().clear()
    finally:
        ray.shutdown()
        if server and server.proxy_files:
            server.proxy_files.remove()


def drain(ingress_app: str, timeout_s: float) -> None:
    """New generations are refused (503) and `/api/ready` answers `Stopping`; generations in
    flight run to their end for up to `timeout_s`, then are stopped (streams end cleanly,
    whole-file requests answer 409) and given STOP_GRACE_S to end."""
    signals = ClusterDrain()
    signals.request()
    started = time.monotonic()
    replicas = _running_replicas(ingress_app, "ingress")
    left = _wait_for_no_generation(signals, replicas, started + timeout_s)
    if left:
        _LOGGER.info("%d generation(s) still running after %.0f s: stopping them", left, timeout_s)
        ClusterStopSignal().raise_stop()
        left = _wait_for_no_generation(signals, replicas, time.monotonic() + STOP_GRACE_S)
    if left:
        _LOGGER.warning("%d generation(s) did not end; shutting down anyway", left)
    else:
        time.sleep(FETCH_GRACE_S)
    _LOGGER.info("drained in %.1f s", time.monotonic() - started)


def _wait_for_no_generation(signals: ClusterDrain, replicas: int, deadline: float) -> int:
    """Waits until every ingress replica reports no generation in flight; returns how many are
    still running at the deadline."""
    last = -1
    while True:
        reports = signals.in_flight()
        left = sum(reports.values())
        if (len(reports) >= replicas and left == 0) or time.monotonic() >= deadline:
            return left
        if left != last:
            _LOGGER.info("stopping: %d generation(s) in flight", left)
            last = left
        time.sleep(DRAIN_POLL_S)


def _running_replicas(app: str, deployment: str) -> int:
    status = serve.status().applications.get(app)
    state = status.deployments.get(deployment) if status else None
    return state.replica_states.get("RUNNING", 0) if state else 0


def metrics_url() -> str:
    """The Prometheus endpoint of the local Ray node (Ray's metrics and this server's)."""
    import ray

    node = next(n for n in ray.nodes() if n["Alive"])
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"

