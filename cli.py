"""`alltalk-serve`: run the embedded server, ask a running server for its status, reload it.

`run` (the default command) starts a local Ray and Serve and serves until Ctrl-C, logging the
applications' replicas as they start. `status` and `reload` talk to a running server over its
public HTTP API only, so they work the same against the embedded server and a cluster.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import embedded_proxy
import own_session

COMMANDS = ("run", "status", "reload", "wyoming")
DEFAULT_URL = "http://127.0.0.1:7851"
_LOGGER = logging.getLogger("alltalk_serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alltalk-serve", description="An AllTalk-compatible TTS server on Ray Serve.",
        epilog="Without a command, `run` is meant: `alltalk-serve --port 7851` starts the server.")
    commands = parser.add_subparsers(dest="command", metavar="{run,status,reload,wyoming}")

    run = commands.add_parser("run", help="start the embedded server (local Ray, Piper on the CPU)",
                              description="Start a local Ray and Serve, deploy serve_config.yaml, serve until Ctrl-C. "
                                          "SIGTERM, SIGINT (Ctrl-C) and SIGHUP (a closed terminal) stop it cleanly, "
                                          "whether they reach this process or its whole process group: generations in "
                                          "flight finish (up to the ingress's graceful_shutdown_timeout_s), then Serve "
                                          "and Ray stop and it exits 0.")
    run.add_argument("--config", type=Path, default=None,
                     help="Serve config (default: serve_config.yaml of the project)")
    run.add_argument("--root", type=Path, default=Path.cwd(),
                     help="server root with confignew.json, models/, voices/, outputs/ (default: current folder)")
    run.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    run.add_argument("--port", type=int, default=None,
                     help="listen port (default: api_def.api_port_number of confignew.json, else 7851)")
    run.add_argument("--engines", default=None,
                     help="comma-separated engines to run, e.g. piper,xtts (default: piper, plus vits/xtts when "
                          "coqui-tts is installed and models/<engine>/ holds a model)")
    run.add_argument("--rvc", choices=("auto", "on", "off"), default="auto",
                     help="run the RVC voice converter (auto: when the rvc extra is installed and "
                          "models/rvc_voices holds a voice)")
    run.add_argument("--num-cpus", type=int, default=None,
                     help="logical CPUs for the local Ray (default: enough for every replica)")
    run.add_argument("--metrics-port", type=int, default=None,
                     help="port of Ray's Prometheus endpoint /metrics (default: a free port, printed at start)")
    run.add_argument("--dashboard-port", type=int, default=None,
                     help="also run the Ray dashboard on this port, e.g. 8265 (asks for the token in "
                          "~/.ray/auth_token; default: no dashboard)")
    run.add_argument("--proxy", choices=embedded_proxy.PROXIES, default=embedded_proxy.proxy_from_env(os.environ),
                     help="Serve's HTTP front of a local Ray: its classic proxy or HAProxy (default: "
                          f"${embedded_proxy.PROXY_VARIABLE}, else {embedded_proxy.DEFAULT_PROXY}; README: Serve's "
                          "HTTP front)")
    run.add_argument("--timeout", type=float, default=900,
                     help="seconds to wait for every application to run (default: %(default)s)")
    run.add_argument("--address", default=None,
                     help="join the Ray cluster at this address (host:port of its head) instead of starting a "
                          "local Ray (default: always a new local Ray)")
    run.add_argument("--wyoming-port", type=int, default=_env_int("ALLTALK_WYOMING_PORT"),
                     help="also answer Home Assistant's Wyoming protocol on this port, e.g. 10200, for clients on "
                          "private addresses (default: $ALLTALK_WYOMING_PORT, else off; README: Home Assistant)")
    run.add_argument("--in-own-session", action="store_true", help=argparse.SUPPRESS)  # given by own_session.run

    wyoming = commands.add_parser(
        "wyoming", help="answer Home Assistant's Wyoming protocol in front of a running server",
        description="A Wyoming TCP server that speaks through a running server's API (one per node of a cluster, "
                    "or one for it); it answers clients on private addresses only.")
    wyoming.add_argument("--url", default=os.environ.get("ALLTALK_URL", DEFAULT_URL),
                         help="server address (default: $ALLTALK_URL or %(default)s)")
    wyoming.add_argument("--host", default="0.0.0.0", help="listen address (default: %(default)s)")
    wyoming.add_argument("--port", type=int, default=_env_int("ALLTALK_WYOMING_PORT") or 10200,
                         help="Wyoming port (default: $ALLTALK_WYOMING_PORT, else %(default)s)")

    for name, text in (("status", "show a running server's readiness, engine, model and voices"),
                       ("reload", "reload a running server: a model, an engine, or its settings files")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--url", default=os.environ.get("ALLTALK_URL", DEFAULT_URL),
                         help="server address (default: $ALLTALK_URL or %(default)s)")
        sub.add_argument("--api-key", default=os.environ.get("ALLTALK_API_KEY"),
                         help="API key when the server asks for one (default: $ALLTALK_API_KEY)")
        sub.add_argument("--timeout", type=float, default=900,
                         help="seconds to wait for an answer (default: %(default)s)")
        if name == "status":
            sub.add_argument("--json", action="store_true", help="print the raw answers as JSON")
    reload = commands.choices["reload"]
    what = reload.add_mutually_exclusive_group()
    what.add_argument("--model", help="switch the current engine to this model, e.g. 'piper - en_US-joe-medium' "
                                      "(a rolling redeploy of its replicas)")
    what.add_argument("--engine", help="make this engine the current one (deployed first if it does not run)")
    return parser


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _wyoming_args(url: str, host: str, port: int) -> Any:
    from wyoming_front import WyomingArgs

    return WyomingArgs(api_url=url, api_key=os.environ.get("ALLTALK_API_KEY"), host=host, port=port)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "run":
        if not args.in_own_session and own_session.supported():
            return own_session.run([sys.executable, str(Path(__file__).resolve()), *argv, "--in-own-session"])
        return run(args)
    if args.command == "wyoming":
        return serve_wyoming(_wyoming_args(args.url, args.host, args.port))
    client = ApiClient(args.url, args.api_key, args.timeout)
    try:
        return status(client, args.json) if args.command == "status" else reload(client, args.model, args.engine)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


# ----- run


def run(args: argparse.Namespace) -> int:
    """Serves until SIGTERM, SIGINT (Ctrl-C) or SIGHUP, then drains and stops everything it
    started: exit 0, no process left behind. A signal while the server starts stops the start.
    Should its local Ray's GCS or raylet stop under it, it exits 1 at once (embedded.LocalRayWatch)."""
    import embedded

    stop = threading.Event()
    starting = True

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            _LOGGER.info("%s: already stopping", signal.Signals(signum).name)
            return
        _LOGGER.info("%s: stopping", signal.Signals(signum).name)
        stop.set()
        if starting:
            raise KeyboardInterrupt

    def take_signals() -> None:
        # ray.init installs Ray's handlers, and Ray's C++ fault handler, which turns a SIGTERM into
        # SIGABRT 3 s later; ours replace them (sigaction), so a stop can take its time.
        for signum in own_session.PASSED_ON:
            signal.signal(signum, on_signal)

    take_signals()
    server, wyoming = None, None
    try:
        _LOGGER.info("starting %s and Serve (server root %s)", f"Ray at {args.address}" if args.address
                     else "a local Ray", args.root.resolve())
        engines = args.engines.split(",") if args.engines else None
        rvc = None if args.rvc == "auto" else args.rvc == "on"
        server = embedded.start_embedded(args.config or embedded.DEFAULT_CONFIG, args.root, args.host, args.port,
                                          engines, args.num_cpus, timeout_s=args.timeout, rvc=rvc,
                                          metrics_port=args.metrics_port, dashboard_port=args.dashboard_port,
                                          address=args.address, on_ray_started=take_signals,
                                          exit_if_ray_stops=True, proxy=args.proxy)
        starting = False
        wyoming = _serving_beside(args, server.port)
        _LOGGER.info("ready: http://%s:%d/ (Ctrl-C stops)", args.host, server.port)
        stop.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, ConnectionError) as exc:
        _LOGGER.error("could not start: %s", exc)
        return 1
    finally:
        starting = False
        if wyoming is not None:
            wyoming.stop()
        embedded.stop_embedded(server)
        _LOGGER.info("stopped")


def _serving_beside(args: argparse.Namespace, port: int) -> Any:
    """Logs where the metrics and the dashboard are; starts the Wyoming front if asked for (and
    returns it)."""
    import embedded

    if not args.address:
        _LOGGER.info("metrics (Prometheus): %s", embedded.metrics_url())
    if args.dashboard_port:
        _LOGGER.info("Ray dashboard: http://%s:%d/ (token: ~/.ray/auth_token)", args.host, args.dashboard_port)
    if not args.wyoming_port:
        return None
    from wyoming_front import WyomingThread

    api_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    wyoming = WyomingThread(_wyoming_args(f"http://{api_host}:{port}", args.host, args.wyoming_port))
    wyoming.start()
    return wyoming


def serve_wyoming(args: Any) -> int:
    """The Wyoming front alone, until SIGTERM or SIGINT."""
    import asyncio

    from wyoming_front import serve_wyoming as serve

    async def until_stopped() -> None:
        serving = asyncio.create_task(serve(args))
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, serving.cancel)
        try:
            await serving
        except asyncio.CancelledError:
            _LOGGER.info("stopped")

    try:
        asyncio.run(until_stopped())
    except OSError as exc:
        _LOGGER.error("could not start: %s", exc)
        return 1
    return 0


# ----- status and reload, over the public API


class ApiError(RuntimeError):
    pass


class ApiClient:
    def __init__(self, url: str, api_key: str | None, timeout_s: float):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, query: dict[str, str] | None = None, ok: tuple[int, ...] = ()) -> Any:
        """The answer's JSON (or text, for plain-text endpoints); ApiError for anything but a 2xx
        and the statuses in `ok` (whose answer is returned like a 2xx's)."""
        target = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(target, method=method)
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read().decode("utf-8", "replace")
                kind = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            body, kind = exc.read().decode("utf-8", "replace"), exc.headers.get_content_type()
            if exc.code not in ok:
                raise ApiError(f"{method} {path}: {exc.code} {body[:500]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from None
        return json.loads(body) if kind == "application/json" else body


def status(client: ApiClient, as_json: bool) -> int:
    """The server, its current engine and its deployments. An engine without a replica answering
    (503) is shown as such, and the deployments still are: they say why."""
    ready = client.call("GET", "/api/ready", ok=(503,))
    settings = client.call("GET", "/api/currentsettings", ok=(503,))
    voices = client.call("GET", "/api/voices", ok=(503,)).get("voices", [])
    applications = client.call("GET", "/api/deployments", ok=(404,)).get("applications", [])
    if as_json:
        print(json.dumps({"ready": ready, "currentsettings": settings, "voices": voices,
                          "applications": applications}, indent=2))
        return 0 if ready == "Ready" else 2
    capable = [name.removesuffix("_capable") for name, value in settings.items()
               if name.endswith("_capable") and value is True]
    shown = ", ".join(voices[:8]) + (f", ... ({len(voices)} in all)" if len(voices) > 8 else "")
    print(f"{'server':<8} {client.url}  {ready}")
    if "current_engine_loaded" not in settings:
        print(f"{'engine':<8} unavailable: {settings.get('message', settings)}")
    else:
        for label, value in (("engine", f"{settings['current_engine_loaded']} ({settings['manufacturer_name']})"),
                             ("model", settings["current_model_loaded"]),
                             ("engines", ", ".join(settings["engines_available"])),
                             ("voices", shown or "none"),
                             ("can do", ", ".join(capable) or "nothing optional")):
            print(f"{label:<8} {value}")
    if applications:
        print("\napplication  deployment  state     replicas")
        for app in applications:
            for deployment in app["deployments"]:
                print(f"{app['name']:<12} {deployment['name']:<11} {deployment['status']:<9} "
                      f"{_replicas(deployment)}")
                for warning in deployment.get("warnings", []):
                    print(f"{'':<12} warning: {warning}")
                if deployment.get("reason") and deployment["status"] != "HEALTHY":
                    print(f"{'':<12} {deployment['status']}: {deployment['reason']}")
            if app["message"] and app["status"] != "RUNNING":
                print(f"{'':<12} {app['status']}: {app['message']}")
    return 0 if ready == "Ready" else 2


def _replicas(deployment: dict[str, Any]) -> str:
    """`1/2 running on cpu, 1 starting (autoscaling 1-4)`, or `0 replicas (scaled to zero)`"""
    states = dict(deployment["replicas"])
    scaling = deployment.get("autoscaling")
    if not states and deployment["target_replicas"] == 0 and scaling and scaling["min_replicas"] == 0:
        text = "0 replicas (scaled to zero)"
    else:
        text = f"{states.pop('RUNNING', 0)}/{deployment['target_replicas']} running"
    if devices := deployment.get("devices"):
        text += " on " + ", ".join(name if len(devices) == 1 else f"{name} ({count})"
                                   for name, count in sorted(devices.items()))
    text += "".join(f", {count} {state.lower()}" for state, count in sorted(states.items()))
    if scaling:
        text += f" (autoscaling {scaling['min_replicas']}-{scaling['max_replicas']})"
    return text


def reload(client: ApiClient, model: str | None, engine: str | None) -> int:
    if model:
        print(f"switching to model {model!r} (rolling out to every replica) ...", flush=True)
        answer = client.call("POST", "/api/reload", {"tts_method": model})
    elif engine:
        print(f"switching to engine {engine!r} ...", flush=True)
        answer = client.call("POST", "/api/enginereload", {"engine": engine})
    else:
        answer = client.call("GET", "/api/reload_config")
    print(answer if isinstance(answer, str) else json.dumps(answer))
    failed = isinstance(answer, dict) and answer.get("status") == "error"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
