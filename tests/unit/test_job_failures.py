"""How a job meets failures, by their type (speechcore/jobs/retry.py), and what it keeps on disk:
a line that kills or hangs its replica counts against `line_retries` like any engine error (it was
waited for as if no replica existed, for ever); two replicas claiming a job at once never both run
it; a job queued by the first job servers (unversioned files) still resumes, and what a job stores
is the schema's, not whatever the pipeline's dataclasses are called."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from speechcore.api import create_app
from speechcore.config.app_args import JobArgs
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.engine_client import EngineTimeout, ReplicaLost
from speechcore.jobs.records import JobRecord
from speechcore.jobs.schema import lines_from_json, lines_to_json, order_from_json, order_to_json
from speechcore.jobs.store import JobStore
from speechcore.orders import Line, Narration, Role, SpeechOrder
from speechcore.service import SpeechService
from tests.contract.test_jobs import wait_for_job
from tests.support import InProcessEngineClient, ToneEngine

OLD_JOB = Path(__file__).parent.parent / "data" / "jobs_v0"
"""A job folder as the first job servers wrote it (order.json and lines.json without a version)."""


class FailingEngineClient(InProcessEngineClient):
    """Every synthesis fails as a lost or hung replica makes it fail through Serve's handles."""

    def __init__(self, error: Exception):
        super().__init__(ToneEngine())
        self.error, self.calls = error, 0

    async def synthesize(self, request):
        self.calls += 1
        raise self.error
        yield  # an async generator, as the real client is


def jobs_app(root: Path, client: InProcessEngineClient, line_retries: int = 1) -> TestClient:
    service = SpeechService(SettingsStore(ServerPaths.at(root)), {"piper": client}, ["piper"], "piper")
    return TestClient(create_app(service, jobs=JobArgs(line_retries=line_retries)))


@pytest.mark.parametrize("error", [ReplicaLost("a replica of the piper engine was lost; retry shortly"),
                                   EngineTimeout("the piper engine sent nothing for 30 s")])
def test_a_line_that_kills_or_hangs_its_replica_fails_the_job_after_its_retries(tmp_path, error):
    engine = FailingEngineClient(error)
    with jobs_app(tmp_path, engine, line_retries=1) as client:
        job = client.post("/api/jobs", json={"text": "One short sentence.", "character_voice_gen": "440hz@16000"})
        assert job.status_code == 202, job.text
        done = wait_for_job(client, job.json()["id"], timeout_s=60)
    assert done["state"] == "failed", done
    assert type(error).__name__ in done["error"] and "after 2 tries" in done["error"]
    # Tried once, then once again (line_retries=1); after a lost replica each try's collect() itself
    # asks once more, as a whole-file request does.
    assert engine.calls == 2 * (2 if isinstance(error, ReplicaLost) else 1)
    assert not list((tmp_path / "outputs" / "jobs" / job.json()["id"]).glob("line-*"))


def test_two_replicas_claiming_a_job_at_once_never_both_get_it(tmp_path):
    store = JobStore(tmp_path)
    job = "0123456789abcdef0123456789abcdef"
    store.save(JobRecord(id=job, client="c", response_format="wav", characters=1, engine="piper", created_at=0))
    for round_ in range(200):
        now = 1000.0 * (round_ + 1)  # every earlier claim's lease has run out: each round is a takeover
        start, won = threading.Barrier(4), []

        def claim(owner: str, now: float = now, start: threading.Barrier = start, won: list = won) -> None:
            start.wait()
            if store.claim(job, owner, lease_s=30, now=now):
                won.append(owner)

        threads = [threading.Thread(target=claim, args=(f"replica-{i}-{round_}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1, f"round {round_}: {won} all claimed the job"
        assert not store.claim(job, "late", lease_s=30, now=now + 1), "the winner's claim is live"
        assert store.claim(job, won[0], lease_s=30, now=now + 1), "and its own to renew"


def test_a_renewal_racing_a_takeover_leaves_the_job_to_one_replica(tmp_path):
    """The holder renews just as its lease has run out and another replica takes the job over:
    whichever lands first has it, never both."""
    store = JobStore(tmp_path)
    for round_ in range(100):
        job = f"{round_:032x}"
        store.save(JobRecord(id=job, client="c", response_format="wav", characters=1, engine="piper", created_at=0))
        assert store.claim(job, "holder", lease_s=30, now=100)
        start, won = threading.Barrier(2), []

        def claim(owner: str, job: str = job, start: threading.Barrier = start, won: list = won) -> None:
            start.wait()
            if store.claim(job, owner, lease_s=30, now=200):
                won.append(owner)

        threads = [threading.Thread(target=claim, args=(owner,)) for owner in ("holder", "successor")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1, f"round {round_}: {won}"
        others = {"holder": "successor", "successor": "holder"}
        assert not store.claim(job, others[won[0]], lease_s=30, now=201), "the other one sees it taken"


def test_a_job_queued_by_the_first_job_servers_resumes(tmp_path):
    job_id = "5f0c2d1e9a8b7c6d5e4f3a2b1c0d9e8f"
    folder = tmp_path / "outputs" / "jobs" / job_id
    shutil.copytree(OLD_JOB, folder)
    assert "version" not in json.loads((folder / "order.json").read_text())
    assert isinstance(json.loads((folder / "lines.json").read_text()), list)
    with jobs_app(tmp_path, InProcessEngineClient(ToneEngine())) as client:
        done = wait_for_job(client, job_id, timeout_s=60)
        assert done["state"] == "done", done
        assert done["segments_done"] == 2
        srt = client.get(f"/api/jobs/{job_id}/captions.srt").text
    assert "First line of an old job." in srt and "And its second." in srt


STORED_V1 = Path(__file__).parent.parent / "data" / "jobs_v1"
"""A job's order and lines as version 1 of the schema stores them, byte for byte."""


def _with_field_renamed(kind: type, old: str, new: str) -> type:
    """`kind` as it would be after a refactor renamed its field `old` to `new`."""
    fields = [(new if field.name == old else field.name, field.type,
               dataclasses.field(default=field.default) if field.default is not dataclasses.MISSING
               else dataclasses.field()) for field in dataclasses.fields(kind)]
    return dataclasses.make_dataclass(kind.__name__, fields, frozen=True)


def test_a_job_is_stored_in_the_schema_whatever_the_pipeline_calls_its_fields():
    """Job files were the pipeline's dataclasses as dicts: renaming a field of SpeechOrder changed
    what queued jobs were written in, and the next version could not resume them. The stored form
    is now the schema's (pinned here), and a rename the schema has not followed fails when a job
    is written, instead of storing the renamed field's default."""
    order = SpeechOrder(text='"Hello," she said. It rained.', language="en", engine="piper",
                        character=Role("en_US-joe-medium.onnx", "r.pth", 2.0),
                        narration=Narration("true", Role("n.onnx"), "narrator"), speed=1.2)
    lines = [Line("character", "Hello,", "en", "One"), Line("narrator", "she said. It rained.", "en")]
    assert order_to_json(order) == json.loads((STORED_V1 / "order.json").read_text())
    assert lines_to_json(lines) == json.loads((STORED_V1 / "lines.json").read_text())
    assert order_from_json(json.loads((STORED_V1 / "order.json").read_text())) == order
    assert lines_from_json(json.loads((STORED_V1 / "lines.json").read_text())) == lines

    renamed_order = _with_field_renamed(SpeechOrder, "text_field", "wire_name")
    with pytest.raises(ValidationError, match="wire_name"):
        order_to_json(renamed_order(text="Hi.", character=Role("a.onnx"), wire_name="input"))
    renamed_line = _with_field_renamed(Line, "chapter", "heading")
    with pytest.raises(ValidationError, match="heading"):
        lines_to_json([renamed_line("character", "Hi.", "en", "One")])
