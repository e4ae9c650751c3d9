"""Output retention (`delete_output_wavs`): which files go, which stay."""

import asyncio
import os
import time
from pathlib import Path

import pytest

from speechcore.jobs.records import JobRecord, JobState
from speechcore.jobs.store import JobStore
from speechcore.retention import remove_expired, retention_loop, retention_seconds

DAY = 86400


@pytest.mark.parametrize("setting, seconds", [("Disabled", None), ("", None), ("7 Days", 7 * DAY), ("1 Day", DAY),
                                              ("2 hours", 7200), ("0 Days", None), ("forever", None),
                                              ("1 Week", 7 * DAY), ("30 Minutes", 1800)])
def test_settings_read_as_durations(setting, seconds):
    assert retention_seconds(setting) == seconds


def _aged(path, days):
    path.write_bytes(b"RIFF")
    past = time.time() - days * DAY
    os.utime(path, (past, past))
    return path


def test_only_old_finished_files_in_the_folder_are_removed(tmp_path):
    outputs, elsewhere = tmp_path / "outputs", tmp_path / "elsewhere"
    outputs.mkdir()
    elsewhere.mkdir()
    old = _aged(outputs / "old.wav", 3)
    fresh = _aged(outputs / "fresh.wav", 0.5)
    partial = _aged(outputs / ".partial-abc", 3)  # still being written
    nested = outputs / "sub"
    nested.mkdir()
    nested_old = _aged(nested / "old.wav", 3)
    target = _aged(elsewhere / "precious.wav", 3)
    (outputs / "link.wav").symlink_to(target)

    removed = remove_expired(outputs, DAY, time.time())

    assert removed == [old]
    assert not old.exists()
    assert fresh.exists() and partial.exists() and nested_old.exists() and target.exists()
    assert (outputs / "link.wav").is_symlink()


def test_the_loop_reads_the_setting_each_pass(tmp_path):
    old = _aged(tmp_path / "old.wav", 3)
    settings = iter(["Disabled", "1 Day"])

    async def run():
        task = asyncio.create_task(retention_loop(lambda: (tmp_path, next(settings, "1 Day")), every_s=0.01))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not old.exists():
                break
        task.cancel()

    asyncio.run(run())
    assert not old.exists()


def test_the_server_applies_retention_while_it_runs(tmp_path):
    """The app's lifespan runs the retention task: with `delete_output_wavs` set, an old output
    disappears without any request asking for it."""
    import json

    from fastapi.testclient import TestClient

    from speechcore.api import create_app
    from speechcore.config.paths import ServerPaths
    from speechcore.config.store import SettingsStore
    from speechcore.service import SpeechService
    from tests.support import InProcessEngineClient, ToneEngine

    (tmp_path / "confignew.json").write_text(json.dumps({"delete_output_wavs": "1 Day"}))
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    old, fresh = _aged(outputs / "old.wav", 2), _aged(outputs / "fresh.wav", 0)
    jobs = JobStore(outputs / "jobs")
    old_job, fresh_job = _finished_job(jobs, "a" * 32, days_ago=2), _finished_job(jobs, "b" * 32, days_ago=0)
    service = SpeechService(SettingsStore(ServerPaths.at(tmp_path)), {"piper": InProcessEngineClient(ToneEngine())},
                            ["piper"], "piper")
    with TestClient(create_app(service, retention_check_s=0.05)):
        deadline = time.monotonic() + 10
        while (old.exists() or old_job.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not old.exists() and fresh.exists()
    assert not old_job.exists() and fresh_job.exists(), "a job finished before the retention goes with it"


def _finished_job(store: JobStore, job_id: str, days_ago: float) -> Path:
    finished = time.time() - days_ago * 86400
    store.save(JobRecord(id=job_id, client="x", state=JobState.DONE, response_format="wav", characters=5,
                         engine="piper", created_at=finished - 10, finished_at=finished))
    return store.job_dir(job_id)
