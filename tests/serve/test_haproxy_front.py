"""The server behind Serve's HAProxy ingress (`alltalk-serve run --proxy haproxy`), whatever the
suite's own front: it starts through the shim (ops/haproxy-with-client-address), the ingress sees
each client's own address (two clients get a share each, and an address a client names itself in
X-Forwarded-For is not taken), HAProxy listens only where the API does (its stats page and metrics
too), and a SIGTERM drains and stops it: exit 0, no process of it left,
HAProxy's included, and its folder of HAProxy files removed."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from embedded import DEFAULT_CONFIG
from tests.conftest import SERVE_PORT
from tests.serve.test_service_stop import _session_dir
from tests.serve.test_stop_signals import DRAIN_BOUND_S, Server, _nothing_left

pytestmark = pytest.mark.serve
LONG = " ".join(["This stream keeps its client's one generation busy for a while."] * 60)


def one_generation_per_client(folder: Path) -> Path:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    ingress = next(app for app in config["applications"] if app["name"] == "alltalk")
    ingress["args"]["access"] = {"max_generations_per_client": 1}
    path = folder / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _hold(url: str, client: httpx.Client, first_audio: threading.Event, result: dict) -> None:
    try:
        with client.stream("POST", f"{url}/v1/audio/speech", json={
                "model": "tts-1", "input": LONG, "voice": "alloy", "speed": 0.25, "stream_format": "audio"}) as held:
            body = b""
            for piece in held.iter_raw():
                body += piece
                first_audio.set()
            result.update(status=held.status_code, bytes=len(body))
    except httpx.HTTPError as exc:
        result["error"] = repr(exc)
    finally:
        first_audio.set()


def test_behind_haproxy_clients_keep_their_addresses_and_a_sigterm_stops_it_cleanly(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    server = Server(root, SERVE_PORT + 15, "--proxy", "haproxy", "--config", str(one_generation_per_client(tmp_path)))
    first = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60)
    second = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=60)
    try:
        started = server.wait_ready()
        haproxies = [p for p in started if p.name() == "haproxy"]
        assert haproxies, "no HAProxy among the server's processes"
        listening = {c.laddr for p in haproxies for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        assert len(listening) >= 3 and {address.ip for address in listening} == {"127.0.0.1"}, listening
        session = _session_dir(started)
        first_audio, held = threading.Event(), {}
        holder = threading.Thread(target=_hold, args=(server.url, first, first_audio, held))
        holder.start()
        assert first_audio.wait(60) and "error" not in held, held
        again = first.post(f"{server.url}/v1/audio/speech", headers={"X-Forwarded-For": "203.0.113.9"},
                           json={"model": "tts-1", "voice": "alloy", "input": "Me too."})
        assert again.status_code == 429, again.text
        other = second.post(f"{server.url}/v1/audio/speech", json={
            "model": "tts-1", "voice": "alloy", "input": "Another client.", "response_format": "wav"})
        assert other.status_code == 200, other.text
        server.process.send_signal(signal.SIGTERM)
        holder.join(DRAIN_BOUND_S + 30)
        server.process.wait(timeout=DRAIN_BOUND_S + 30)
    finally:
        first.close()
        second.close()
        server.close()
    assert "error" not in held and held["status"] == 200, (held, server.output[-3000:])
    assert server.process.returncode == 0, server.output[-3000:]
    _nothing_left(server, started, session)
