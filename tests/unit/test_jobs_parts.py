"""The parts of long-text jobs that need no server: captions, the job folder's claims, and the
order in which an engine replica hands out its synthesis steps."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from deployments.step_turns import StepTurns
from speechcore.audio.pcm import PcmChunk
from speechcore.jobs.captions import Cue, srt, vtt
from speechcore.jobs.records import JobRecord
from speechcore.jobs.store import JobStore, UnknownJob
from speechcore.text.paragraphs import split_paragraphs

JOB = "0123456789abcdef0123456789abcdef"


def test_captions_number_and_time_every_sentence():
    cues = [Cue(0.0, 1.2344, "First one."), Cue(1.2344, 3661.5, "A second -->\n\nline.")]
    assert srt(cues) == ("1\n00:00:00,000 --> 00:00:01,234\nFirst one.\n\n"
                         "2\n00:00:01,234 --> 01:01:01,500\nA second -> line.\n\n")
    assert vtt(cues).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.234\nFirst one.\n\n")


def test_a_claim_is_held_while_renewed_and_passes_on_when_not(tmp_path):
    store = JobStore(tmp_path)
    store.save(JobRecord(id=JOB, client="c", response_format="wav", characters=1, engine="piper", created_at=0))
    assert store.claim(JOB, "a", lease_s=30, now=100)
    assert not store.claim(JOB, "b", lease_s=30, now=110), "a's claim is live"
    assert store.claim(JOB, "a", lease_s=30, now=120), "a renews its own"
    assert store.claim(JOB, "b", lease_s=30, now=151), "a stopped renewing: b takes over"
    store.release(JOB, "a")  # not a's any more: stays b's
    assert not store.claim(JOB, "c", lease_s=30, now=152)
    store.release(JOB, "b")
    assert store.claim(JOB, "c", lease_s=30, now=152)


def test_a_claim_of_a_process_that_is_gone_passes_on_at_once(tmp_path):
    store = JobStore(tmp_path)
    store.save(JobRecord(id=JOB, client="c", response_format="wav", characters=1, engine="piper", created_at=0))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim = {"owner": "old", "host": socket.gethostname(), "pid": int(gone.stdout), "renewed_at": 100}
    (tmp_path / JOB / "claim.0").write_text(json.dumps(claim))
    assert store.claim(JOB, "new", lease_s=30, now=101)


def test_lines_are_kept_whole_and_ids_are_checked(tmp_path):
    store = JobStore(tmp_path)
    store.write_line(JOB, 3, PcmChunk(b"\x01\x00" * 100, 16000))
    assert store.line_format(JOB, 3) == (16000, 100) and store.line_format(JOB, 4) is None
    assert store.read_line(JOB, 3).pcm == b"\x01\x00" * 100
    assert not [p for p in (tmp_path / JOB).iterdir() if p.name.startswith(".partial-")]
    for bad in ("../" + JOB, JOB.upper(), JOB[:-1], "/etc/passwd"):
        with pytest.raises(UnknownJob):
            store.job_dir(bad)


def test_interactive_steps_go_before_background_ones():
    async def scenario() -> list[str]:
        turns, order = StepTurns(1), []

        async def step(name: str, background: bool) -> None:
            async with turns.turn(background):
                order.append(name)
                await asyncio.sleep(0.01)

        holder = asyncio.create_task(step("job line 1", True))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(step("job line 2", True)), asyncio.create_task(step("job line 3", True))]
        await asyncio.sleep(0)
        waiting.append(asyncio.create_task(step("live request", False)))
        await asyncio.gather(holder, *waiting)
        return order

    assert asyncio.run(scenario()) == ["job line 1", "live request", "job line 2", "job line 3"]


def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on():
    async def scenario() -> bool:
        turns = StepTurns(1)
        first_done = asyncio.Event()

        async def hold() -> None:
            async with turns.turn():
                await first_done.wait()

        async def wait_turn() -> None:
            async with turns.turn():
                pass

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        cancelled, later = asyncio.create_task(wait_turn()), asyncio.create_task(wait_turn())
        await asyncio.sleep(0)
        first_done.set()
        await asyncio.sleep(0)  # the slot is handed to `cancelled` ...
        cancelled.cancel()  # ... which goes away before it runs
        await asyncio.wait_for(asyncio.gather(holder, later), timeout=1)
        return later.done()

    assert asyncio.run(scenario())


def test_no_background_step_starts_while_an_interactive_one_runs():
    async def scenario() -> list[str]:
        turns, events = StepTurns(2), []
        live_running = asyncio.Event()
        release_live = asyncio.Event()

        async def live() -> None:
            async with turns.turn(False):
                events.append("live starts")
                live_running.set()
                await release_live.wait()
                events.append("live ends")

        async def job_line() -> None:
            async with turns.turn(True):
                events.append("job line starts")

        live_task = asyncio.create_task(live())
        await live_running.wait()
        line_task = asyncio.create_task(job_line())
        await asyncio.sleep(0.05)  # a slot is free, but the live step runs
        release_live.set()
        await asyncio.gather(live_task, line_task)
        return events

    assert asyncio.run(scenario()) == ["live starts", "live ends", "job line starts"]


def test_short_lines_of_their_own_without_an_end_mark_are_headings():
    text = ("Chapter One\n\nIt was night.\nThe lamp was lit.\r\n\r\n  II. The Storm  \n\n"
            "\"Look out!\"\n\nWhy?\n\n" + "A very long line that goes on without any end mark " * 3 + "\n\n***")
    assert [(p.text[:20], p.heading) for p in split_paragraphs(text)] == [
        ("Chapter One", True), ("It was night.\nThe la", False), ("II. The Storm", True),
        ('"Look out!"', False), ("Why?", False), ("A very long line tha", False), ("***", False)]


def test_the_server_queues_so_many_jobs_and_forgets_finished_ones_after_the_retention(tmp_path):
    from speechcore.config.app_args import JobArgs
    from speechcore.jobs.desk import JobLimit
    from speechcore.jobs.records import JobState
    from speechcore.jobs.runner import JobRunner
    from speechcore.orders import Role, SpeechOrder

    runner = JobRunner(lambda: tmp_path, pipeline=None, args=JobArgs(max_queued_jobs=2, max_jobs_per_client=5),
                       keep_s=lambda: 3600)
    order = SpeechOrder(text="Hello there.", character=Role("voice.onnx"), engine="piper")

    async def submit_three() -> list[str]:
        first = await runner.desk.submit(order, "wav", "addr:1")
        await runner.desk.submit(order, "wav", "addr:2")
        with pytest.raises(JobLimit, match="2 unfinished jobs"):
            await runner.desk.submit(order, "wav", "addr:3")
        return [first.id]

    [first] = asyncio.run(submit_three())
    record = runner.scheduler.store.load(first)
    record.finish(JobState.DONE)
    record.finished_at = 1000.0
    runner.scheduler.store.save(record)
    assert runner.scheduler.expire(now=1000.0 + 3599) == []
    assert runner.scheduler.expire(now=1000.0 + 3601) == [first]
    assert not (tmp_path / first).exists() and len(runner.scheduler.store.records()) == 1


def test_a_stored_order_round_trips_and_a_future_version_is_refused_clearly():
    from speechcore.jobs.schema import UnreadableJobFile, order_from_json, order_to_json
    from speechcore.orders import Narration, Role, SpeechOrder

    order = SpeechOrder(text="Hi.", character=Role("a.onnx", "r.pth", 2.0), language="en", engine="piper",
                        narration=Narration("true", Role("n.onnx"), "narrator"), speed=1.2)
    stored = order_to_json(order)
    assert stored["version"] == 1 and order_from_json(json.loads(json.dumps(stored))) == order
    with pytest.raises(UnreadableJobFile, match="version 2"):
        order_from_json({**stored, "version": 2})
    with pytest.raises(UnreadableJobFile, match="cannot read"):
        order_from_json({**stored, "character": {"speaker": "a.onnx"}})
