"""A job's sentences spread over the engine's replicas, in parallel: a real server whose Piper
application has two replicas and whose jobs run two sentences at once; the replicas' own log lines
(one per engine call: the replica's process, when it ended and how long it took) show that both
spoke, at the same time, and the audio still has every sentence in document order."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import BUNDLED_VOICE, PROJECT_DIR, SERVE_PORT
from tests.contract.test_jobs import parse_cues, wait_for_job
from tests.serve.test_job_resume import ServerProcess

pytestmark = pytest.mark.serve

SENTENCES = [f"This is sentence {i} of a job spread over two replicas." for i in range(1, 21)]
ENGINE_CALL = re.compile(r"ServeReplica:piper:tts-piper pid=(\d+)\)\S* INFO (\S+ \S+) .*CALL synthesize OK ([\d.]+)ms")


def _two_replicas_two_lines(folder: Path) -> Path:
    config = yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text())
    for app in config["applications"]:
        if app["name"] == "piper":
            deployment = app["deployments"][0]
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = 2
            app["args"]["threads"] = 1
        if app["name"] == "alltalk":
            app["args"]["jobs"] = {"lines_at_once": 2}
    path = folder / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_jobs_sentences_run_on_every_replica_of_the_engine(tmp_path):
    # Every replica log line reaches the server's output (Ray would fold repeated lines into one).
    server = ServerProcess(tmp_path, SERVE_PORT + 15, _two_replicas_two_lines(tmp_path), env={"RAY_DEDUP_LOGS": "0"})
    try:
        job = server.client.post("/api/jobs", json={"text": " ".join(SENTENCES), "character_voice_gen": BUNDLED_VOICE,
                                                    "language": "en"}).json()
        done = wait_for_job(server.client, job["id"], timeout_s=240)
        assert done["state"] == "done", done["error"]
        cues = parse_cues(server.client.get(done["urls"]["captions_srt"]).text)
        assert [c[2] for c in cues] == SENTENCES
    finally:
        code = server.stop()
    assert code == 0
    calls = []  # (replica process, start, end) of every engine call, from the replicas' log lines
    for line in server.lines:
        if found := ENGINE_CALL.search(line):
            end = datetime.strptime(found.group(2), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            calls.append((found.group(1), end - float(found.group(3)) / 1000, end))
    assert len(calls) >= len(SENTENCES) and len({pid for pid, _, _ in calls}) == 2, calls
    overlapping = [(a, b) for a in calls for b in calls if a[0] < b[0] and a[1] < b[2] and b[1] < a[2]]
    assert len(overlapping) >= 3, "the two replicas spoke at the same time"
