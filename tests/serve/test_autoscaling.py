"""Autoscaling followed on real Serve: under load the Piper application goes from one replica to
two, and back to one once the load falls, while clients keep speaking; no request fails during
either change, and the replica count Serve's autoscaler sets is on the head's Prometheus endpoint
(the Grafana dashboard's "Replicas" panel). Serve 2.60's healthy-replica gauge is not used here: it
got no series for the replica autoscaling added (seen on this machine), only for replicas started
with the deployment. The shipped autoscaling_config with its delays and Serve's
metric intervals shortened, so that the test takes a minute, not ten."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import httpx
import pytest
import yaml

import embedded_config
from tests.conftest import PROJECT_DIR, make_root
from tests.ray_head import QUICK_AUTOSCALING, RayHead, ray_head
from tests.support import decode_audio, deployment_view, metric_value, prometheus_samples, wait_until

pytestmark = pytest.mark.serve

TEXT = "Autoscaling follows the load. Each request here is two sentences long."


def _piper_that_scales_quickly(root, http_port: int) -> dict:
    raw = yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text())
    piper = next(app for app in raw["applications"] if app["name"] == "piper")
    piper["args"].update(threads=1, parallel_steps=1)
    scaling = piper["deployments"][0]["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 2), "the shipped range this test follows"
    scaling.update(upscale_delay_s=1, downscale_delay_s=4, look_back_period_s=2, metrics_interval_s=1)
    config = embedded_config.prepare_config(raw, root, "127.0.0.1", http_port, 0, ["piper"], rvc=False)
    return config.model_dump(mode="json", exclude_unset=True)


class Speakers:
    """Clients that each speak and fetch the file, one request after another, until stopped; every
    answer that is not audio is kept as a failure."""

    def __init__(self, url: str):
        self.url, self.spoken, self.failures = url, 0, []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def speaking(self, clients: int) -> Iterator[None]:
        stop = threading.Event()
        threads = [threading.Thread(target=self._speak, args=(stop,)) for _ in range(clients)]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
            assert not any(thread.is_alive() for thread in threads), "a client still waits for its answer"

    def _speak(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not stop.is_set():
                try:
                    answer = client.post("/api/tts-generate", data={"text_input": TEXT})
                    answer.raise_for_status()
                    audio = client.get(answer.json()["output_file_url"])
                    audio.raise_for_status()
                    assert decode_audio(audio.content).duration_s > 2.0
                    with self._lock:
                        self.spoken += 1
                except (httpx.HTTPError, ValueError, KeyError, AssertionError) as exc:
                    with self._lock:
                        self.failures.append(repr(exc)[:300])


def _piper_replicas(url: str) -> tuple[int, int]:
    """(running replicas, the autoscaler's target) of the Piper deployment."""
    piper = deployment_view(url, "tts-piper")
    return piper["replicas"].get("RUNNING", 0), piper["target_replicas"]


def _exported_target(head: RayHead) -> float:
    """The Piper deployment's replica target as the head exports it (Serve's autoscaler's)."""
    samples = prometheus_samples(head.metrics_port, "ray_serve_autoscaling_target_replicas")
    return metric_value(samples, "ray_serve_autoscaling_target_replicas", application="piper", deployment="tts-piper")


def test_piper_scales_to_two_replicas_under_load_and_back_to_one_with_no_request_failed(tmp_path_factory):
    root = make_root(tmp_path_factory, "autoscaling")
    with ray_head(num_cpus=4, environment=QUICK_AUTOSCALING) as head:
        head.deploy(_piper_that_scales_quickly(root, head.http_port), root / "serve_config.yaml")
        url = head.wait_until_ready()
        wait_until(lambda: _piper_replicas(url) == (1, 1), "one Piper replica at rest", 120, 1.0)
        speakers = Speakers(url)

        with speakers.speaking(clients=6):  # 6 requests in flight for a target of 2 per replica
            wait_until(lambda: _piper_replicas(url) == (2, 2), "a second Piper replica under load", 180, 0.5)
            wait_until(lambda: _exported_target(head) == 2, lambda: f"a target of 2 exported: {_exported_target(head)}",
                       60, 1.0)
            scaled_up_at = speakers.spoken
            wait_until(lambda: speakers.spoken >= scaled_up_at + 12, "requests served by two replicas", 120, 0.5)

        with speakers.speaking(clients=1):  # one request at a time: one replica is enough
            wait_until(lambda: _piper_replicas(url) == (1, 1), "back to one Piper replica", 180, 0.5)
            wait_until(lambda: _exported_target(head) == 1, lambda: f"a target of 1 exported: {_exported_target(head)}",
                       60, 1.0)
            scaled_down_at = speakers.spoken
            wait_until(lambda: speakers.spoken >= scaled_down_at + 3, "requests served after the change", 120, 0.5)

        assert not speakers.failures, speakers.failures[:5]
        assert head.serve("shutdown", "-y").returncode == 0
