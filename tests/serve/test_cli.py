"""The `alltalk-serve` command line (cli.py), as a user runs it: `run` starts the embedded server in
its own process and shows the replicas coming up, `status` and `reload` talk to a running server
over HTTP, and Ctrl-C stops everything it started."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.tts import Synthesize

from embedded_proxy import free_ports
from tests.conftest import PROJECT_DIR, SERVE_PORT

pytestmark = pytest.mark.serve
CLI = [sys.executable, str(PROJECT_DIR / "cli.py")]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=PROJECT_DIR)


def test_help_lists_the_commands():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("run", "status", "reload", "wyoming"):
        assert command in result.stdout
    assert "--metrics-port" in cli("run", "--help").stdout


@pytest.mark.both_fronts
def test_status_of_a_running_server(serve_server):
    url = f"http://127.0.0.1:{SERVE_PORT}"
    result = cli("status", "--url", url)
    assert result.returncode == 0, result.stderr
    assert f"{url}  Ready" in result.stdout and "engine   piper (Piper)" in result.stdout
    # What an operator of an autoscaled endpoint looks at first: deployments and their replicas.
    assert "alltalk      ingress     HEALTHY   1/1 running" in result.stdout, result.stdout
    assert re.search(r"piper +tts-piper +HEALTHY +(\d)/\1 running on cpu \(autoscaling 1-\d\)", result.stdout), \
        result.stdout
    raw = json.loads(cli("status", "--url", url, "--json").stdout)
    assert raw["ready"] == "Ready" and raw["currentsettings"]["current_engine_loaded"] == "piper"
    piper = next(a for a in raw["applications"] if a["name"] == "piper")
    deployment = piper["deployments"][0]
    assert piper["status"] == "RUNNING" and deployment["replicas"] == {"RUNNING": deployment["target_replicas"]}
    assert deployment["devices"] == {"cpu": deployment["target_replicas"]} and deployment["warnings"] == []


def test_reload_a_running_server(serve_server):
    url = f"http://127.0.0.1:{SERVE_PORT}"
    result = cli("reload", "--url", url)
    assert result.returncode == 0 and "reloaded" in result.stdout
    wrong = cli("reload", "--url", url, "--model", "piper - no-such-model")
    assert wrong.returncode == 1 and "Invalid TTS method" in wrong.stdout


def test_status_of_no_server_is_a_clear_error():
    result = cli("status", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "cannot reach http://127.0.0.1:9" in result.stderr


def test_run_shows_progress_serves_and_stops_cleanly(tmp_path):
    port = SERVE_PORT + 10
    # A cluster this machine knew once and that is gone: `run` starts its own local Ray regardless.
    gone = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{_closed_port()}"}
    [wyoming_port] = free_ports(1)
    process = subprocess.Popen([*CLI, "run", "--root", str(tmp_path), "--port", str(port), "--engines", "piper",
                                "--rvc", "off", "--wyoming-port", str(wyoming_port)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=PROJECT_DIR, env=gone)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while not any("ready: http://" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines[-30:])
            lines.append(process.stdout.readline())
        started = psutil.Process(process.pid).children(recursive=True)
        assert httpx.get(f"http://127.0.0.1:{port}/api/ready").text == "Ready"
        progress = [line for line in lines if " s] alltalk " in line]
        assert any("tts-piper 0/1" in line for line in progress), progress  # replicas seen starting
        assert "piper RUNNING (tts-piper 1/1)" in progress[-1]
        assert any("metrics (Prometheus): http://" in line for line in lines)
        assert any(f"Wyoming (Home Assistant): tcp://127.0.0.1:{wyoming_port}" in line for line in lines)
        assert asyncio.run(_wyoming_speech_seconds(wyoming_port)) > 0.5
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, f"left behind: {[p.pid for p in alive]}"


async def _wyoming_speech_seconds(port: int) -> float:
    """What Home Assistant does: synthesize over Wyoming, and the seconds of audio it got."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text="Home Assistant speaks.").event())
        audio = b""
        while not AudioStop.is_type((event := await asyncio.wait_for(client.read_event(), 60)).type):
            assert not Error.is_type(event.type), event.data
            if AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                audio += chunk.audio
        return len(audio) / chunk.width / chunk.rate


def test_wyoming_in_front_of_a_running_server_stops_on_sigterm(serve_server):
    [port] = free_ports(1)
    process = subprocess.Popen([*CLI, "wyoming", "--url", f"http://127.0.0.1:{SERVE_PORT}", "--host", "127.0.0.1",
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=PROJECT_DIR)
    try:
        lines = [process.stdout.readline()]
        while "Wyoming (Home Assistant)" not in lines[-1]:
            assert process.poll() is None, "".join(lines)
            lines.append(process.stdout.readline())
        assert asyncio.run(_wyoming_speech_seconds(port)) > 0.5
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_run_told_to_join_a_cluster_that_does_not_answer_fails_clearly(tmp_path):
    started = time.monotonic()
    result = cli("run", "--root", str(tmp_path), "--address", f"127.0.0.1:{_closed_port()}", timeout=60)
    assert result.returncode == 1
    assert time.monotonic() - started < 40
    assert "no Ray cluster answers at 127.0.0.1:" in result.stderr + result.stdout
