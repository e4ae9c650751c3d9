"""Operations on real Serve: the server's own metrics reach the local Ray's Prometheus endpoint
with engine tags and counts that match the requests sent, every response carries an
`x-request-id`, and the request's log line (in the ingress replica's Serve log) carries the same
id, without the text spoken."""

from __future__ import annotations

import glob
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import ray

from tests.conftest import BUNDLED_VOICE, SERVE_METRICS_PORT, SERVE_PROXY
from tests.support import decode_audio, metric_value, prometheus_samples

pytestmark = [pytest.mark.serve, pytest.mark.both_fronts]
PROJECT = Path(__file__).resolve().parents[2]
ROUTED = {"ray_serve_deployment_queued_queries"}
"""Serve metrics that the router calling a deployment exports (the others come from its replicas
and Serve's controller): behind HAProxy, no Serve router calls the ingress."""
AUTOSCALED = {"ray_serve_autoscaling_target_replicas"}
"""Serve metrics of its autoscaler, exported for autoscaled deployments only (the engine's, not the
ingress's fixed replica count)."""
TEXTS = ["Metrics count every request.", "The second request is a little longer than the first one.",
         "And a third."]
STREAMED = "Streaming has a time to first audio."


def _samples(prefix: str = "ray_alltalk_") -> dict[tuple[str, frozenset], float]:
    return prometheus_samples(SERVE_METRICS_PORT, prefix)


def _wait_for(condition: Callable[[dict], bool], timeout_s: float = 90, prefix: str = "ray_alltalk_") -> dict:
    """Ray exports metrics every few seconds: poll until `condition` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = _samples(prefix)
        if condition(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(1)


def _settled_samples(quiet_s: float = 11.0, timeout_s: float = 90) -> dict:
    """The samples once Ray has exported what earlier tests did (each process exports every 10 s):
    two readings `quiet_s` apart that agree."""
    deadline = time.monotonic() + timeout_s
    last = _samples()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = _samples()
        if now == last:
            return now
        last = now
    return last


def test_custom_metrics_count_the_requests_sent(serve_server):
    client = serve_server.client
    before = _settled_samples()
    audio_s = 0.0
    for text in TEXTS:
        answer = client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": BUNDLED_VOICE,
                                                         "language": "en", "narrator_enabled": "false"})
        assert answer.status_code == 200, answer.text
        audio_s += decode_audio(client.get(answer.json()["output_file_url"]).content).duration_s
    streamed = client.get("/api/tts-generate-streaming", params={
        "text": STREAMED, "voice": BUNDLED_VOICE, "language": "en", "output_file": "metrics"})
    assert streamed.status_code == 200
    audio_s += decode_audio(streamed.content).duration_s
    too_large = client.post("/api/tts-generate", content=b"x" * 2_000_000,
                            headers={"content-type": "application/x-www-form-urlencoded"})
    assert too_large.status_code == 413
    for answer in (streamed, too_large, client.get("/"), client.get("/api/voices"), client.get("/no/such/path")):
        assert len(answer.headers.get_list("x-request-id")) == 1, answer.url  # every answer, refused ones too

    generate = {"endpoint": "/api/tts-generate", "engine": "piper", "status": "200"}
    expected_requests = metric_value(before, "ray_alltalk_requests_total", **generate) + len(TEXTS)
    expected_waits = metric_value(before, "ray_alltalk_queue_wait_seconds_count", engine="piper") + len(TEXTS) + 1
    # Each process exports on its own clock: wait for the ingress's and the engine replicas' numbers.
    after = _wait_for(lambda s: metric_value(s, "ray_alltalk_requests_total", **generate) >= expected_requests
                      and metric_value(s, "ray_alltalk_rejections_total", reason="too_large")
                      > metric_value(before, "ray_alltalk_rejections_total", reason="too_large")
                      and metric_value(s, "ray_alltalk_queue_wait_seconds_count", engine="piper") >= expected_waits)

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("ray_alltalk_requests_total", **generate) == len(TEXTS)
    assert delta("ray_alltalk_requests_total", endpoint="/api/tts-generate-streaming", engine="piper",
                 status="200") == 1
    assert delta("ray_alltalk_characters_total", engine="piper") == sum(map(len, TEXTS)) + len(STREAMED)
    assert delta("ray_alltalk_audio_seconds_total", engine="piper") == pytest.approx(audio_s, rel=0.02)
    assert delta("ray_alltalk_realtime_factor_count", engine="piper") == len(TEXTS) + 1
    assert delta("ray_alltalk_request_seconds_count", endpoint="/api/tts-generate", engine="piper") == len(TEXTS)
    assert delta("ray_alltalk_time_to_first_audio_seconds_count", endpoint="/api/tts-generate-streaming",
                 engine="piper") == 1
    assert delta("ray_alltalk_rejections_total", endpoint="/api/tts-generate", reason="too_large") == 1
    # Inside the engine replicas: the wait for a synthesis step, and the model load at start.
    assert delta("ray_alltalk_queue_wait_seconds_count", engine="piper", application="piper") == len(TEXTS) + 1
    assert metric_value(after, "ray_alltalk_model_load_seconds_count", engine="piper") >= 1
    # Serve's tags say where each number comes from.
    assert any(
        n == "ray_alltalk_requests_total" and ("application", "alltalk") in ls and ("deployment", "ingress") in ls
        for n, ls in after
    )


def test_the_serve_metrics_on_the_grafana_dashboard_are_exported_for_the_engine_and_the_ingress(serve_server):
    """The dashboard's panels on queues, calls in progress and healthy replicas read Serve's own
    metrics, by application: each is exported for the Piper engine's deployment, and for the
    ingress too except what only a Serve router in front of it exports (none behind HAProxy) and what
    only an autoscaled deployment exports."""
    dashboard = json.loads((PROJECT / "ops" / "grafana-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"ray_serve_[a-z_]+", target["expr"])}
    assert queried, "the dashboard has panels on Serve's own metrics"
    assert serve_server.client.post("/api/tts-generate", data={"text_input": "Counted by Serve."}).status_code == 200
    ingress_routed = SERVE_PROXY == "classic"
    wanted = {name: {("piper", "tts-piper")} | ({("alltalk", "ingress")} if name not in AUTOSCALED and (
        ingress_routed or name not in ROUTED) else set()) for name in queried}

    def missing(samples: dict) -> dict[str, set[tuple[str, str]]]:
        found: dict[str, set[tuple[str, str]]] = {}
        for name, labels in samples:
            tags = dict(labels)
            found.setdefault(name, set()).add((tags.get("application"), tags.get("deployment")))
        return {name: gone for name, places in wanted.items() if (gone := places - found.get(name, set()))}

    samples = _wait_for(lambda samples: not missing(samples), prefix="ray_serve_")
    assert not missing(samples), f"series missing, by (application, deployment): {missing(samples)}"


def test_the_request_id_is_echoed_and_in_the_request_log_line(serve_server):
    client = serve_server.client
    text = "Which request was this one?"
    mine = f"test-{uuid.uuid4()}"
    answer = client.post(
        "/api/tts-generate",
        headers={"x-request-id": mine},
        data={"text_input": text, "character_voice_gen": BUNDLED_VOICE, "narrator_enabled": "false"},
    )
    assert answer.status_code == 200 and answer.headers["x-request-id"] == mine
    generated = client.get("/api/ready").headers["x-request-id"]
    assert generated and generated != mine

    # This session's log folder (session_latest may point at another local Ray started by a test).
    logs = ray._private.worker._global_node.get_logs_dir_path()

    def log_line(request_id: str) -> dict | None:
        for path in glob.glob(f"{logs}/serve/replica_alltalk_ingress_*.log"):
            with open(path, encoding="utf-8") as log:
                for line in log:
                    if f'"request_id":"{request_id}"' in line:
                        return json.loads(line.split(" -- request ", 1)[1])
        return None

    deadline = time.monotonic() + 30
    while (line := log_line(mine)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert line is not None, "no request log line with the request's id"
    assert line["endpoint"] == "/api/tts-generate" and line["status"] == 200 and line["engine"] == "piper"
    assert line["voices"] == [BUNDLED_VOICE] and line["characters"] == len(text)
    assert line["audio_s"] == pytest.approx(
        decode_audio(client.get(answer.json()["output_file_url"]).content).duration_s, abs=0.01
    )
    assert line["latency_ms"] > 0 and "text" not in line  # no text content at INFO
    assert line["languages"] == ["en"]
    assert log_line(generated) is not None

    # language=auto: the line says which language the engine was asked to speak.
    french = f"test-{uuid.uuid4()}"
    answer = client.post(
        "/api/tts-generate",
        headers={"x-request-id": french},
        data={"text_input": "Le vieux sorcier regardait les étoiles en silence.", "language": "auto"},
    )
    assert answer.status_code == 200
    deadline = time.monotonic() + 30
    while (line := log_line(french)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert line is not None and line["languages"] == ["fr"], line


def test_job_metrics_count_a_jobs_sentences_and_its_end(serve_server):
    """`alltalk_job_lines_total` grows by the job's sentences, `alltalk_job_seconds{outcome="done"}`
    by one job, and `alltalk_jobs{state}` says how many are queued and running (none, after)."""
    from tests.contract.test_jobs import wait_for_job

    client = serve_server.client
    before = _settled_samples()
    job = client.post("/api/jobs", json={"text": "One sentence. Another sentence. A third one.", "language": "en"})
    done = wait_for_job(client, job.json()["id"])
    assert done["state"] == "done" and done["segments_total"] == 3, done

    def lines(s: dict) -> float:
        return metric_value(s, "ray_alltalk_job_lines_total", engine="piper")

    def finished(s: dict) -> float:
        return metric_value(s, "ray_alltalk_job_seconds_count", outcome="done")

    after = _wait_for(lambda s: lines(s) >= lines(before) + 3 and finished(s) >= finished(before) + 1)
    assert lines(after) == lines(before) + 3 and finished(after) == finished(before) + 1
    assert metric_value(after, "ray_alltalk_job_seconds_sum", outcome="done") > metric_value(
        before, "ray_alltalk_job_seconds_sum", outcome="done")
    settled = _wait_for(lambda s: metric_value(s, "ray_alltalk_jobs", state="running") == 0)
    assert {state for (name, labels), _ in settled.items() if name == "ray_alltalk_jobs"
            for key, state in labels if key == "state"} == {"queued", "running"}
    assert metric_value(settled, "ray_alltalk_jobs", state="queued") == 0
    client.delete(f"/api/jobs/{done['id']}")
