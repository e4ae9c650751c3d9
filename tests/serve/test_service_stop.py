"""A service manager's stop, as systemd, docker and Kubernetes send it: a real `alltalk-serve run`
process gets SIGTERM (or SIGINT, Ctrl-C) while streams are in flight. It drains (a short stream
finishes whole, a long one is stopped at the drain time and ends cleanly, new generations get 503
and /api/ready `Stopping`), stops Serve and its local Ray, exits 0 in bounded time, and leaves no
process behind: none of its process group, none it started, none that uses its Ray session folder."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psutil
import pytest
import yaml

from tests.conftest import BUNDLED_VOICE, PROJECT_DIR, SERVE_PORT
from tests.serve.test_cli import CLI
from tests.support import decode_audio, uses_folder

pytestmark = [pytest.mark.serve, pytest.mark.both_fronts]

DRAIN_S = 6
"""Long enough that the steps below, each waiting for an event, fit in the drain on a loaded machine."""
SENTENCE = "This sentence is one of very many in a long story."
LONG = " ".join([SENTENCE] * 80)  # at a quarter of the speed: minutes of audio, far more than the drain time
SHORT = "A short reply. It has three sentences. Each is a chunk."


def _config_with_drain(folder: Path) -> Path:
    config = yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text())
    ingress = next(a for a in config["applications"] if a["name"] == "alltalk")["deployments"][0]
    ingress["graceful_shutdown_timeout_s"] = DRAIN_S
    path = folder / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _session_dir(processes: list[psutil.Process]) -> str:
    for proc in processes:
        for arg in proc.cmdline():
            if "/session_" in arg and "ray" in arg:
                folder = arg.split("=", 1)[-1]
                return folder[:folder.index("/session_") + len("/session_") + 26]
    raise AssertionError("no Ray session folder in the server's processes")


def _whole_file(port: int, result: dict, sent: threading.Event) -> None:
    """A long non-streamed `/api/tts-generate` (at a quarter of the speed), sent over a socket of its
    own so that `sent` is set once the whole request is on its way; `result` gets the answer."""
    body = urlencode({"text_input": " ".join([SENTENCE] * 36), "speed": "0.25", "narrator_enabled": "false"})
    head = (f"POST /api/tts-generate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=120) as connection:
        connection.sendall((head + body).encode())
        sent.set()
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    result["status"] = int(answer.split(b" ", 2)[1])
    result["body"] = answer.partition(b"\r\n\r\n")[2]


def _stream(url: str, text: str, result: dict, first_audio: threading.Event) -> None:
    """Reads a whole stream, setting `first_audio` when its first bytes arrive; `result` gets the
    body, and `error` if the transfer broke. The long text goes to the OpenAI endpoint (longer
    inputs, and a speed)."""
    if text == LONG:
        request = httpx.Request("POST", f"{url}/v1/audio/speech", json={
            "model": "tts-1", "input": text, "voice": BUNDLED_VOICE, "speed": 0.25, "stream_format": "audio"})
    else:
        request = httpx.Request("GET", f"{url}/api/tts-generate-streaming", params={
            "text": text, "voice": BUNDLED_VOICE, "language": "en", "output_file": "x"})
    try:
        with httpx.Client(timeout=120) as client, client.stream(request.method, request.url, content=request.content,
                                                                headers=request.headers) as response:
            result["status"] = response.status_code
            body = bytearray()
            for data in response.iter_raw():
                body.extend(data)
                first_audio.set()
            result["body"] = bytes(body)
            result["ended"] = time.monotonic()
    except httpx.HTTPError as exc:
        result["error"] = repr(exc)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_drains_stops_everything_and_exits_0(tmp_path, stop_signal):
    port = SERVE_PORT + 11
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([*CLI, "run", "--root", str(tmp_path), "--port", str(port), "--engines", "piper",
                                "--rvc", "off", "--config", str(_config_with_drain(tmp_path))],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_DIR,
                               start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("ready: http://" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines[-30:])
            time.sleep(0.2)
        started = psutil.Process(process.pid).children(recursive=True)
        session = _session_dir(started)
        whole = decode_audio(httpx.get(f"{url}/api/tts-generate-streaming", timeout=60, params={
            "text": SHORT, "voice": BUNDLED_VOICE, "language": "en", "output_file": "x"}).content).duration_s

        long_stream: dict = {}
        short_stream: dict = {}
        whole_file: dict = {}
        long_audio, short_audio, whole_sent = threading.Event(), threading.Event(), threading.Event()
        streams = [threading.Thread(target=_stream, args=(url, LONG, long_stream, long_audio)),
                   threading.Thread(target=_stream, args=(url, SHORT, short_stream, short_audio)),
                   threading.Thread(target=_whole_file, args=(port, whole_file, whole_sent))]
        streams[2].start()
        assert whole_sent.wait(60)  # in flight at the ingress long before the streams below have audio
        streams[0].start()
        assert long_audio.wait(60), long_stream  # the long stream is under way
        streams[1].start()
        assert short_audio.wait(60), short_stream  # and the short one: both in flight at the signal
        signalled = time.monotonic()
        process.send_signal(stop_signal)
        ready = _wait_for_ready_text(url, "Stopping", timeout_s=DRAIN_S)  # the ingress has seen the drain
        assert ready == "Stopping", ready
        refused = httpx.post(f"{url}/api/tts-generate", data={"text_input": "Too late."})
        assert refused.status_code == 503 and refused.headers["retry-after"]
        for stream in streams:
            stream.join(timeout=120)
        process.wait(timeout=120)
        exited = time.monotonic()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(lines)
    assert process.returncode == 0, output[-3000:]
    assert exited - signalled < DRAIN_S + 60, output[-3000:]  # bounded: no hang (not a timing)

    # The short stream finished whole; the long one was stopped when the drain time was up and
    # ended cleanly (a complete chunked body that decodes), well short of its full length.
    assert "error" not in short_stream and short_stream["status"] == 200, short_stream
    # Piper samples its durations (noise_w): a sentence runs up to a quarter longer or shorter from
    # one run to the next. A stream stopped after its first sentence would have a third of its audio.
    assert 0.6 * whole < decode_audio(short_stream["body"]).duration_s < 1.6 * whole
    assert "error" not in long_stream and long_stream["status"] == 200, long_stream.get("error")
    # 137 s of about 1250 here: the drain stopped it, far from its end.
    assert 0 < decode_audio(long_stream["body"]).duration_s < 0.5 * _full_length_s(whole)
    assert long_stream["ended"] <= exited, "the long stream was ended by the drain, before the server exited"
    assert "generation(s) still running after" in output and "stopped" in output
    # A whole-file request still running when the drain time ran out answers 409 and leaves no file.
    assert whole_file["status"] == 409 and b"generate-failure" in whole_file["body"], whole_file
    assert not list((tmp_path / "outputs").glob("*.wav")), "no file, half-written or whole, from the stopped request"

    # Nothing of the server is left: no process it started, none in its process group, none that
    # uses its Ray session folder.
    _, alive = psutil.wait_procs(started, timeout=20)
    assert not alive, f"left behind: {[(p.pid, p.name()) for p in alive]}"
    group = [p for p in psutil.process_iter() if _pgid(p) == process.pid]
    assert not group, f"left in the process group: {[(p.pid, p.name()) for p in group]}"
    users = [p for p in psutil.process_iter() if uses_folder(p, session)]
    assert not users, f"using {session}: {[(p.pid, p.name()) for p in users]}"


def _wait_for_ready_text(url: str, wanted: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while (text := httpx.get(f"{url}/api/ready").text) != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    return text


def _full_length_s(short_s: float) -> float:
    """About how long LONG would be spoken whole at a quarter of the speed, from the length of SHORT."""
    return short_s / len(SHORT) * len(LONG) * 4


def _pgid(proc: psutil.Process) -> int | None:
    try:
        import os
        return os.getpgid(proc.pid)
    except (ProcessLookupError, PermissionError):
        return None
