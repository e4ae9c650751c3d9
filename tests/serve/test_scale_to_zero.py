"""A GPU engine scaled to zero on real Serve (opt-in: its autoscaling_config's min_replicas: 0).
While VITS has no replica the server stays Ready, lists the engine's voices and model from the
description kept from its last replica, and `alltalk-serve status` says "0 replicas (scaled to
zero)"; a model chosen meanwhile is the next replica's (that no replica starts for it is tested
without Ray, tests/unit/test_cold_starts.py). The next request starts a replica and
gets its audio (whole file, streamed, or converted by an RVC voice, whose replica pulls the engine's
stream), and the cold start is in the metrics; with a cold start timeout shorter than a replica's
start, the request is answered 503 with Retry-After instead of hanging, with or without RVC. Each
request that finds it at zero lets it go back to zero before the next step."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

import embedded_config
from tests.conftest import PROJECT_DIR, RVC, make_coqui_root
from tests.ray_head import QUICK_AUTOSCALING, RayHead, ray_head
from tests.support import decode_audio, deployment_view, metric_value, prometheus_samples, wait_until

pytestmark = [pytest.mark.serve,
              pytest.mark.skipif(importlib.util.find_spec("TTS") is None, reason="the coqui extra is not installed")]

FIRST_MODEL, NEXT_MODEL = "vits - tiny-vctk", "vits - tiny-vctk-22k"
"""The model VITS starts with (16 kHz) and the one chosen at zero: the same speakers at 22.05 kHz, so
the audio's rate tells which one spoke."""
RVC_VOICE, RVC_RATE = "char/char.pth", 40000


def _deploy(head: RayHead, root: Path, cold_start_timeout_s: float) -> str:
    raw = yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text())
    vits = next(app for app in raw["applications"] if app["name"] == "vits")
    vits["deployments"][0]["autoscaling_config"].update(min_replicas=0, max_replicas=1, downscale_delay_s=2,
                                                        look_back_period_s=2, metrics_interval_s=1)
    ingress = next(app for app in raw["applications"] if app["name"] == "alltalk")
    ingress["args"]["cold_start_timeout_s"] = cold_start_timeout_s
    config = embedded_config.prepare_config(raw, root, "127.0.0.1", head.http_port, 0, ["vits"],
                                            saved={"vits": {"model": FIRST_MODEL}}, rvc=RVC)
    head.deploy(config, root / "serve_config.yaml")
    return head.wait_until_ready()


def _at_zero(url: str) -> bool:
    vits = deployment_view(url, "tts-vits")
    return vits["replicas"] == {} and vits["target_replicas"] == 0


def _ingress_replicas(head: RayHead) -> set[str]:
    """The ingress replicas that run now (none while Serve rebuilds the application)."""
    deployments = head.serve_details()["applications"].get("alltalk", {}).get("deployments", {})
    replicas = deployments.get("ingress", {}).get("replicas", [])
    return {replica["replica_id"] for replica in replicas if replica["state"] == "RUNNING"}


def _wait_for_zero(url: str) -> None:
    wait_until(lambda: _at_zero(url), "VITS scaled to zero", 240, 0.5)


def _cold_starts(head: RayHead) -> float:
    samples = prometheus_samples(head.metrics_port, "ray_alltalk_cold_start")
    return metric_value(samples, "ray_alltalk_cold_start_seconds_count", engine="vits")


def _status(url: str) -> str:
    status = subprocess.run([sys.executable, str(PROJECT_DIR / "cli.py"), "status", "--url", url],
                            capture_output=True, text=True, timeout=120, cwd=PROJECT_DIR)
    assert status.returncode == 0, status.stdout + status.stderr
    return status.stdout


def test_vits_at_zero_replicas_keeps_the_server_ready_and_the_next_request_starts_one(tmp_path_factory):
    root = make_coqui_root(tmp_path_factory, "scale-to-zero")
    (root / "confignew.json").write_text(json.dumps({"rvc_settings": {"rvc_enabled": True, "f0method": "pm"}}))
    with ray_head(num_cpus=4, environment=QUICK_AUTOSCALING) as head:
        url = _deploy(head, root, cold_start_timeout_s=120)
        _wait_for_zero(url)  # the ingress's first description started a replica; it is gone again

        assert httpx.get(f"{url}/api/ready", timeout=30).text == "Ready"
        settings = httpx.get(f"{url}/api/currentsettings", timeout=30).json()
        engine = (settings["current_engine_loaded"], settings["current_model_loaded"])
        assert engine == ("vits", FIRST_MODEL)
        assert httpx.get(f"{url}/api/voices", timeout=30).json()["voices"]
        status = _status(url)
        assert "tts-vits    HEALTHY   0 replicas (scaled to zero) (autoscaling 0-1)" in status, status

        # A model chosen at zero: nothing starts now, the next replica serves it.
        chosen = httpx.post(f"{url}/api/reload", params={"tts_method": NEXT_MODEL}, timeout=120)
        assert chosen.json() == {"status": "model-success"}, chosen.text
        assert httpx.get(f"{url}/api/currentsettings", timeout=30).json()["current_model_loaded"] == \
            NEXT_MODEL

        spoken = httpx.post(f"{url}/api/tts-generate", timeout=180,
                            data={"text_input": "The first request after a quiet hour.", "character_voice_gen": "p225"})
        assert spoken.status_code == 200, spoken.text
        audio = decode_audio(httpx.get(f"{url}{spoken.json()['output_file_url']}", timeout=60).content)
        assert audio.sample_rate == 22050 and audio.duration_s > 0.5
        assert wait_until(lambda: _cold_starts(head), "the cold start in the metrics", 60, 1.0) == 1

        _wait_for_zero(url)
        with httpx.stream("GET", f"{url}/api/tts-generate-streaming", timeout=180,
                          params={"text": "Streamed after a cold start.", "voice": "p225", "language": "en",
                                  "output_file": "cold"}) as stream:
            assert stream.status_code == 200
            streamed = decode_audio(stream.read())
        assert streamed.sample_rate == 22050 and streamed.duration_s > 0.5
        assert wait_until(lambda: _cold_starts(head) >= 2, "the streamed request's cold start", 60, 1.0)
        assert _cold_starts(head) == 2

        if RVC:  # the rvc extra: a voice converted by the RVC replica, which pulls the engine's stream
            _wait_for_zero(url)
            converted = httpx.post(f"{url}/api/tts-generate", timeout=180,
                                   data={"text_input": "Converted after a cold start.", "character_voice_gen": "p225",
                                         "rvccharacter_voice_gen": RVC_VOICE})
            assert converted.status_code == 200, converted.text
            audio = decode_audio(httpx.get(f"{url}{converted.json()['output_file_url']}", timeout=60).content)
            assert audio.sample_rate == RVC_RATE and audio.duration_s > 0.5
            assert wait_until(lambda: _cold_starts(head) >= 3, "the converted request's cold start", 60, 1.0)

        # An ingress that waits one second for a replica to start answers 503, not a hang (a
        # replica's start, torch's import and a model load take longer than that anywhere).
        _wait_for_zero(url)
        before = _ingress_replicas(head)
        url = _deploy(head, root, cold_start_timeout_s=1)
        wait_until(lambda: _ingress_replicas(head) and not _ingress_replicas(head) & before,
                   "the new ingress replica in place", 120, 0.5)
        _wait_for_zero(url)  # the new ingress replica's first description started one again
        refused = httpx.post(f"{url}/api/tts-generate", timeout=60,
                             data={"text_input": "Too soon.", "character_voice_gen": "p225"})
        assert refused.status_code == 503 and refused.headers.get("retry-after"), refused.text
        assert "scaled to zero" in refused.text
        if RVC:
            _wait_for_zero(url)
            refused = httpx.post(f"{url}/api/tts-generate", timeout=60,
                                 data={"text_input": "Too soon.", "character_voice_gen": "p225",
                                       "rvccharacter_voice_gen": RVC_VOICE})
            assert refused.status_code == 503 and refused.headers.get("retry-after"), refused.text
            assert "scaled to zero" in refused.text
        assert head.serve("shutdown", "-y").returncode == 0
