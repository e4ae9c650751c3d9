"""A stop signal whoever sends it: SIGTERM, SIGINT and SIGHUP, each to the server's pid (docker stop,
Kubernetes) and to its whole process group (systemd's default, `timeout`, Ctrl-C in a terminal, a
closed terminal), while a stream speaks. The stream completes, the server exits 0 within the drain
bound, and nothing of it is left. And when Ray's GCS dies under a running server, it says so and
exits within seconds instead of waiting a minute for it."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from embedded_proxy import HAPROXY_FOLDER_PREFIX
from tests.conftest import BUNDLED_VOICE, PROJECT_DIR, SERVE_PORT
from tests.serve.test_cli import CLI
from tests.serve.test_service_stop import _pgid, _session_dir
from tests.support import decode_audio, uses_folder

pytestmark = pytest.mark.serve

DRAIN_BOUND_S = 20 + 30
"""The ingress's graceful_shutdown_timeout_s (serve_config.yaml), then Serve's and Ray's own stop."""
TEXT = " ".join(["The keeper climbed the stairs and lit the lamp for the ships at sea."] * 12)


class Server:
    """`alltalk-serve run` in a session of its own (as a service manager starts it), its output kept."""

    def __init__(self, root: Path, port: int, *options: str):
        self.url = f"http://127.0.0.1:{port}"
        self.proxy_folders_before = set(Path("/tmp").glob(f"{HAPROXY_FOLDER_PREFIX}*"))  # HAProxy's, behind HAProxy
        self.process = subprocess.Popen(
            [*CLI, "run", "--root", str(root), "--port", str(port), "--engines", "piper", "--rvc", "off", *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_DIR, start_new_session=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in iter(self.process.stdout.readline, ""):
            self.lines.append(line)
            if "ready: http://" in line:
                self.ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> list[psutil.Process]:
        """Every process the server runs, once it serves."""
        assert self.ready.wait(240), self.output[-3000:]
        return psutil.Process(self.process.pid).children(recursive=True)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _stream(url: str, first_audio: threading.Event, result: dict) -> None:
    try:
        with httpx.stream("GET", f"{url}/api/tts-generate-streaming", timeout=120, params={
                "text": TEXT, "voice": BUNDLED_VOICE, "language": "en", "output_file": "x"}) as response:
            body = b""
            for piece in response.iter_raw():
                body += piece
                if len(body) > 44:  # past the WAV header: audio is coming
                    first_audio.set()
            result.update(status=response.status_code, body=body)
    except httpx.HTTPError as exc:
        result["error"] = repr(exc)
    finally:
        first_audio.set()


def _nothing_left(server: Server, started: list[psutil.Process], session: str) -> None:
    _, alive = psutil.wait_procs(started, timeout=20)
    assert not alive, f"left behind: {[(p.pid, p.name()) for p in alive]}"
    group = [p for p in psutil.process_iter() if _pgid(p) == server.process.pid]
    assert not group, f"left in the process group: {[(p.pid, p.name()) for p in group]}"
    users = [p for p in psutil.process_iter() if uses_folder(p, session)]
    assert not users, f"using {session}: {[(p.pid, p.name()) for p in users]}"
    folders = set(Path("/tmp").glob(f"{HAPROXY_FOLDER_PREFIX}*")) - server.proxy_folders_before
    assert not folders, f"HAProxy's files left: {folders}"


@pytest.mark.parametrize("to", ["pid", "group"])
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_to_the_server_or_its_group_lets_the_stream_finish(tmp_path, stop_signal, to):
    server = Server(tmp_path, SERVE_PORT + 13)
    try:
        started = server.wait_ready()
        session = _session_dir(started)
        first_audio, result = threading.Event(), {}
        reader = threading.Thread(target=_stream, args=(server.url, first_audio, result))
        reader.start()
        assert first_audio.wait(60) and "error" not in result, result
        signalled = time.monotonic()
        if to == "pid":
            server.process.send_signal(stop_signal)
        else:
            os.killpg(server.process.pid, stop_signal)
        reader.join(120)
        server.process.wait(timeout=DRAIN_BOUND_S + 30)
        took = time.monotonic() - signalled
    finally:
        server.close()
    assert "error" not in result and result["status"] == 200, (result.get("error"), server.output[-3000:])
    spoken = decode_audio(result["body"]).duration_s
    assert spoken > 12 * 2.5, f"the stream was cut at {spoken:.1f} s of audio (twelve sentences of about 4 s)"
    assert server.process.returncode == 0, server.output[-3000:]
    assert took < DRAIN_BOUND_S, f"{took:.0f} s to stop"
    assert f"{stop_signal.name}: stopping" in server.output
    _nothing_left(server, started, session)


def test_a_gcs_that_dies_under_the_server_ends_it_within_seconds(tmp_path):
    server = Server(tmp_path, SERVE_PORT + 14)
    try:
        started = server.wait_ready()
        session = _session_dir(started)
        gcs = next(p for p in started if p.name() == "gcs_server")
        gcs.kill()
        killed = time.monotonic()
        server.process.wait(timeout=30)
        took = time.monotonic() - killed
    finally:
        server.close()
    assert server.process.returncode != 0
    assert took < 10, f"{took:.1f} s to notice"
    assert f"gcs_server (pid {gcs.pid}) has stopped under the server" in server.output, server.output[-3000:]
    _nothing_left(server, started, session)
