"""A job outlives the ingress replica running it: with two ingress replicas, the one holding the job's
claim is killed (SIGKILL: no release, no clean-up) and another takes the job over (the one already
running, or Serve's replacement, whichever looks first) and finishes it, keeping the sentences
spoken before the kill."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.contract.test_jobs import claim_in_force
from tests.serve.test_job_resume import pcm_and_rate
from tests.support import fixed_replicas

pytestmark = pytest.mark.serve

TEXT = " ".join(f"Sentence number {i} of a job that changes hands." for i in range(1, 31))


def _finished(client, job_id: str, timeout_s: float = 240) -> dict:
    """The job once it has ended; answers other than 200 (an ingress replica just killed) are asked again."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = client.get(f"/api/jobs/{job_id}")
        if answer.status_code == 200 and answer.json()["state"] in ("done", "failed", "cancelled"):
            return answer.json()
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not end within {timeout_s} s")


def test_a_running_ingress_replica_takes_over_the_job_of_one_that_died(serve_server):
    client = serve_server.client
    with fixed_replicas("alltalk", "ingress", 2) as replicas:
        pids = {replica["pid"] for replica in replicas}
        job = client.post("/api/jobs", json={"text": TEXT, "language": "en"}).json()
        folder = serve_server.outputs / "jobs" / job["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/api/jobs/{job['id']}").json()["segments_done"] < 3:
            assert time.monotonic() < deadline, "the job did not get under way"
            time.sleep(0.1)
        holder = claim_in_force(folder)["pid"]
        assert holder in pids, (holder, pids)
        spoken_before = {p.name: p.read_bytes() for p in folder.glob("line-*.wav")}
        os.kill(holder, signal.SIGKILL)

        done = _finished(client, job["id"])
        assert done["state"] == "done", done
        assert done["segments_done"] == done["segments_total"] == 30
        finisher = claim_in_force(folder)
        assert finisher.get("released") and finisher["pid"] != holder, "another replica finished it"
        audio, _rate = pcm_and_rate(client.get(done["urls"]["audio"]).content)
        assert spoken_before and all(pcm_and_rate(line)[0] in audio for line in spoken_before.values()), \
            "the sentences spoken before the kill are in the audio as they were"
        client.delete(f"/api/jobs/{job['id']}")
