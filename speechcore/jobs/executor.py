"""JobExecutor: carries out one claimed job. Its text is planned into lines (sentences with their
roles, `SpeechPipeline.lines`), then the lines without a file yet are synthesized `lines_at_once`
at a time, spread over the engine's replicas, as background work that engine replicas serve after
interactive requests. Each finished line is stored at once, so a job whose replica or server goes
away resumes where it stopped. When every line is there they are assembled into the result and
removed. Failures are handled as `retry.RULES` says."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..audio.encode import resample
from ..audio.pcm import PcmChunk
from ..config.app_args import JobArgs
from ..engine_types import EngineInfo
from ..orders import Line, NothingToSpeak, SpeechOrder
from ..pipeline import SpeechPipeline
from ..telemetry import Telemetry
from . import retry
from .assembly import assemble
from .records import JobRecord, JobState
from .store import JobStore

_LOGGER = logging.getLogger(__name__)
SAVE_EVERY_S = 1.0
UNAVAILABLE_PAUSE_S = 5.0
"""How long a job waits before it tries again when its engine has no replica to answer."""


class LineFailed(RuntimeError):
    """A line's engine call failed for good (at once, or after `line_retries` tries): the job fails."""


class CancelledElsewhere(Exception):
    """Another replica marked the job cancelled while this one ran it."""


def clean_up(store: JobStore, job_id: str) -> None:
    """Removes what a cancelled or failed job had made (its lines and any partial result)."""
    store.drop_lines(job_id)
    store.drop_results(job_id)


class JobExecutor:
    def __init__(self, pipeline: SpeechPipeline, args: JobArgs, telemetry: Telemetry,
                 pause_s: Callable[[int], float] = retry.pause_s):
        """`pause_s(failures)`: how long a line waits before its next try."""
        self.pipeline, self.args, self.telemetry, self.pause_s = pipeline, args, telemetry, pause_s

    async def run(self, store: JobStore, job_id: str) -> None:
        """Runs the job to its end (done, failed, or cancelled by another replica); returns early,
        leaving it queued, when its engine has no replica to answer. Cancelling the call leaves
        the job resumable."""
        record = await asyncio.to_thread(store.load, job_id)
        if record.state.finished:
            return
        try:
            order = await asyncio.to_thread(store.load_order, job_id)
            info = await self.pipeline.check(order)
            lines = await asyncio.to_thread(store.load_lines, job_id)
            if lines is None:
                lines = await self.pipeline.lines(order)
                if not lines:
                    raise NothingToSpeak("the text has nothing to speak")
                await asyncio.to_thread(store.save_lines, job_id, lines)
            await self._speak(store, record, info, order, lines)
            await asyncio.to_thread(assemble, store, record, lines)
        except CancelledElsewhere:
            await asyncio.to_thread(clean_up, store, job_id)
            return
        except Exception as exc:  # whatever ends a job is its error, for its owner to read
            if retry.outcome_of(exc) is retry.Outcome.WAIT:  # no replica now: not the job's fault
                _LOGGER.warning("job %s waits for its engine: %s", job_id, exc)
                await asyncio.sleep(UNAVAILABLE_PAUSE_S)
                return
            await self._fail(store, record, exc)
            return
        record.finish(JobState.DONE)
        await asyncio.to_thread(store.save, record)
        await asyncio.to_thread(store.drop_lines, job_id)
        _LOGGER.info("job %s done: %d lines, %.1f s of audio in %.0f s", job_id, len(lines), record.audio_s,
                     record.finished_at - record.created_at)
        self.telemetry.job_finished("done", record.finished_at - record.created_at)

    async def _fail(self, store: JobStore, record: JobRecord, exc: Exception) -> None:
        record.finish(JobState.FAILED, str(exc) or type(exc).__name__)
        await asyncio.to_thread(store.save, record)
        await asyncio.to_thread(clean_up, store, record.id)
        _LOGGER.warning("job %s failed: %s", record.id, record.error)
        self.telemetry.job_finished("failed", record.finished_at - record.created_at)

    async def _speak(self, store: JobStore, record: JobRecord, info: EngineInfo, order: SpeechOrder,
                     lines: list[Line]) -> None:
        """Synthesizes the lines that have no file yet, `lines_at_once` at a time."""
        finished = await asyncio.to_thread(lambda: {i: store.line_format(record.id, i) for i in range(len(lines))})
        done = {i: fmt for i, fmt in finished.items() if fmt is not None}
        now = time.time()
        record.state, record.started_at = JobState.RUNNING, record.started_at or now
        record.run_started_at, record.characters_this_run = now, 0
        record.lines_total, record.lines_done = len(lines), len(done)
        record.characters_planned = sum(len(line.text) for line in lines)
        record.characters_done = sum(len(lines[i].text) for i in done)
        record.audio_s = sum(frames / rate for rate, frames in done.values())
        await asyncio.to_thread(store.save, record.model_copy())
        _LOGGER.info("job %s running: %d lines%s", record.id, len(lines),
                     f", {len(done)} done before" if done else "")
        todo: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(lines)):
            if index not in done:
                todo.put_nowait(index)
        saved = [time.monotonic()]

        async def worker() -> None:
            while not todo.empty():
                index = todo.get_nowait()
                audio = await self._line_audio(record.id, index, info, order, lines[index])
                await asyncio.to_thread(store.write_line, record.id, index, audio)
                record.lines_done += 1
                record.characters_done += len(lines[index].text)
                record.characters_this_run += len(lines[index].text)
                record.audio_s += audio.duration_s
                self.telemetry.job_line_finished(info.engine)
                if time.monotonic() - saved[0] >= SAVE_EVERY_S:
                    saved[0] = time.monotonic()
                    await self._save_progress(store, record)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.args.lines_at_once, todo.qsize())):
                    group.create_task(worker())
        except BaseExceptionGroup as group:  # the first line's failure stops the others and is the job's
            raise group.exceptions[0] from None
        await self._save_progress(store, record)

    async def _save_progress(self, store: JobStore, record: JobRecord) -> None:
        """Saves the record unless the job was cancelled meanwhile (by a request on another replica)."""
        current = await asyncio.to_thread(store.load, record.id)
        if current.state is JobState.CANCELLED:
            raise CancelledElsewhere()
        await asyncio.to_thread(store.save, record.model_copy())

    async def _line_audio(self, job_id: str, index: int, info: EngineInfo, order: SpeechOrder,
                          line: Line) -> PcmChunk:
        """One line's audio as one chunk; LineFailed when it cannot be had."""
        part = self.pipeline.part(info, order, line, background=True)
        failures = 0
        while True:
            try:
                chunks = await self.pipeline.runner.collect(part.source, part.request, info.engine)
                break
            except Exception as exc:
                outcome = retry.outcome_of(exc)
                if outcome is retry.Outcome.WAIT:
                    _LOGGER.warning("job %s line %d waits for its engine: %s", job_id, index, exc)
                    await asyncio.sleep(UNAVAILABLE_PAUSE_S)
                    continue
                failures += 1
                if outcome is retry.Outcome.FAIL or failures > self.args.line_retries:
                    tries = f" (after {failures} tries)" if outcome is retry.Outcome.RETRY else ""
                    raise LineFailed(f"line {index + 1} of the job: {type(exc).__name__}: {exc}{tries}") from exc
                _LOGGER.warning("job %s line %d: %s; trying again (%d of %d)", job_id, index, exc, failures,
                                self.args.line_retries)
                await asyncio.sleep(self.pause_s(failures))
        if not chunks:
            return PcmChunk(b"", 16_000)
        return chunks[0] if len(chunks) == 1 else await asyncio.to_thread(resample, chunks, chunks[0].sample_rate)
