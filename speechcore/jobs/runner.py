"""JobRunner: carries out the jobs of the jobs folder on one ingress replica, oldest first,
`jobs_at_once` at a time, each claimed so that no two replicas run the same job.

A job is planned into lines (sentences with their roles, `SpeechPipeline.lines`), then its lines
are synthesized `lines_at_once` at a time, spread over the engine's replicas, as background work
that engine replicas serve after interactive requests. Each finished line is stored at once, so a
job whose replica or server goes away resumes where it stopped, on whichever replica claims it
next (a restart of the server is one). When every line is there, they are joined in order into
the audio file and its captions, and the lines are removed. A line whose engine call fails for a
reason that may pass (a stop request, an engine error) is tried again `line_retries` times; when
the engine has no replica to answer (starting, rolling out, one lost) the job waits for it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..audio.encode import AudioEncoder, Chapter, resample
from ..audio.formats import AUDIO_FORMATS
from ..audio.pcm import PcmChunk
from ..audio.wav import write_wav
from ..cancellation import GenerationStopped
from ..config.app_args import JobArgs
from ..engine_client import EngineUnavailable
from ..engine_types import EngineError, EngineInfo, UnknownModel, UnknownVoice, UnsupportedLanguage
from ..pipeline import Line, NothingToSpeak, SpeechOrder, SpeechPipeline
from ..rvc_requests import VoiceConversionError
from ..telemetry import Telemetry
from .captions import Cue, srt, vtt
from .records import JobRecord, JobState
from .store import JobStore, UnknownJob

_LOGGER = logging.getLogger(__name__)
CLIENT_ERRORS = (UnknownVoice, UnsupportedLanguage, UnknownModel)
PASSING_ERRORS = (GenerationStopped, EngineError, VoiceConversionError)
"""Engine call failures that may pass when tried again (client errors among them excepted); a
line fails its job after `line_retries` of them. An engine with no replica to answer
(EngineUnavailable) is waited for instead, as long as it takes."""
SAVE_EVERY_S = 1.0
UNAVAILABLE_PAUSE_S = 5.0
"""How long a job waits before it tries again when its engine has no replica to answer."""


class JobLimit(RuntimeError):
    """A client, or the server, has as many unfinished jobs as it may (429)."""


class JobNotDone(RuntimeError):
    """The job's result is asked for before it is done (409)."""


class _CancelledElsewhere(Exception):
    """Another replica marked the job cancelled while this one ran it."""


def client_digest(client: str) -> str:
    """Who submitted a job, as stored: a digest, so that no API key is written to disk."""
    return hashlib.sha256(client.encode()).hexdigest()[:24]


class JobRunner:
    def __init__(self, folder: Callable[[], Path], pipeline: SpeechPipeline, args: JobArgs,
                 telemetry: Telemetry | None = None, poll_s: float = 2.0,
                 keep_s: Callable[[], float | None] = lambda: None, expire_every_s: float = 600.0):
        """`folder`: where jobs live, and `keep_s`: how long finished jobs are kept (None: for
        ever); both read at each use, so that they follow the settings."""
        self._folder = folder
        self._keep_s = keep_s
        self.expire_every_s = expire_every_s
        self.pipeline = pipeline
        self.args = args
        self.telemetry = telemetry or Telemetry()
        self.poll_s = poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._running: dict[str, asyncio.Task[None]] = {}
        self._finished: set[str] = set()
        """Jobs seen finished: they never run again, so the folder scans skip reading them."""
        self._cancelled: set[str] = set()
        self._wake = asyncio.Event()

    @property
    def store(self) -> JobStore:
        return JobStore(self._folder())

    # ----- what the API asks

    async def submit(self, order: SpeechOrder, response_format: str, client: str) -> JobRecord:
        """Queues a job (checked by the caller) and answers its record; JobLimit beyond the limits."""
        store, owner = self.store, client_digest(client)
        unfinished = await self._unfinished(store)
        if sum(r.client == owner for r in unfinished) >= self.args.max_jobs_per_client:
            raise JobLimit(f"at most {self.args.max_jobs_per_client} unfinished jobs per client; wait for one to "
                           "finish or cancel one (DELETE /api/jobs/{id})")
        if len(unfinished) >= self.args.max_queued_jobs:
            raise JobLimit(f"the server has {len(unfinished)} unfinished jobs, as many as it queues; try again later")
        record = JobRecord(id=secrets.token_hex(16), client=owner, response_format=response_format,
                           characters=len(order.text), engine=order.engine or "", created_at=time.time())
        await asyncio.to_thread(store.save_order, record.id, order)
        await asyncio.to_thread(store.save, record)
        _LOGGER.info("job %s queued: %d characters, engine %s, %s", record.id, record.characters, record.engine,
                     response_format)
        self._wake.set()
        return record

    async def get(self, job_id: str, client: str) -> JobRecord:
        """The client's job; UnknownJob for another client's (its id tells nothing)."""
        record = await asyncio.to_thread(self.store.load, job_id)
        if record.client != client_digest(client):
            raise UnknownJob(f"no job {job_id!r}")
        return record

    async def list(self, client: str) -> list[JobRecord]:
        owner = client_digest(client)
        return [r for r in await asyncio.to_thread(self.store.records) if r.client == owner]

    async def result(self, job_id: str, client: str, name: str) -> Path:
        """A file of the job's result (`audio.<ext>`, `captions.srt`, `captions.vtt`)."""
        record = await self.get(job_id, client)
        if record.state is not JobState.DONE:
            raise JobNotDone(f"job {job_id} is {record.state.value}; its audio and captions are there once it is done")
        path = self.store.result_path(job_id, name)
        if not path.is_file():
            raise UnknownJob(f"job {job_id} has no {name}")
        return path

    async def cancel(self, job_id: str, client: str) -> JobRecord:
        """Cancels an unfinished job (its lines in flight stop, its files go); removes a finished one."""
        record = await self.get(job_id, client)
        store = self.store
        if record.state.finished:
            await asyncio.to_thread(store.remove, job_id)
            _LOGGER.info("job %s removed", job_id)
            return record
        record.finish(JobState.CANCELLED)
        await asyncio.to_thread(store.save, record)
        _LOGGER.info("job %s cancelled", job_id)
        self.telemetry.job_finished("cancelled", record.finished_at - record.created_at)
        if task := self._running.get(job_id):
            self._cancelled.add(job_id)
            task.cancel()
        else:  # queued, or running on another replica, which stops at its next line and cleans up
            await asyncio.to_thread(store.drop_lines, job_id)
        return record

    # ----- the loop

    async def run(self) -> None:
        """Runs jobs until cancelled (the app's lifespan); jobs in flight stay resumable."""
        renewing = asyncio.create_task(self._renew_claims())
        expired_at = 0.0
        try:
            while True:
                if time.monotonic() - expired_at >= self.expire_every_s:
                    expired_at = time.monotonic()
                    await asyncio.to_thread(self.expire, time.time())
                await self._start_claimable()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                self._wake.clear()
        finally:
            renewing.cancel()
            tasks = list(self._running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def expire(self, now: float) -> list[str]:
        """Removes finished jobs older than the output retention setting (`delete_output_wavs`)."""
        keep_s = self._keep_s()
        if keep_s is None:
            return []
        store = self.store
        expired = [r.id for r in store.records() if r.state.finished and now - (r.finished_at or now) > keep_s]
        for job_id in expired:
            store.remove(job_id)
        if expired:
            _LOGGER.info("job retention: removed %d finished job(s)", len(expired))
        return expired

    async def _start_claimable(self) -> None:
        store = self.store
        unfinished = await self._unfinished(store)
        self.telemetry.jobs_counted(sum(r.state is JobState.QUEUED for r in unfinished),
                                    sum(r.state is JobState.RUNNING for r in unfinished))
        for record in unfinished:
            if len(self._running) >= self.args.jobs_at_once:
                return
            if record.id in self._running:
                continue
            if await asyncio.to_thread(store.claim, record.id, self.owner, self.args.lease_s, time.time()):
                task = asyncio.create_task(self._run(store, record.id))
                self._running[record.id] = task
                task.add_done_callback(lambda _task, job_id=record.id: self._ended(job_id))

    async def _unfinished(self, store: JobStore) -> list[JobRecord]:
        records = await asyncio.to_thread(store.records, self._finished)
        self._finished.update(r.id for r in records if r.state.finished)
        return [r for r in records if not r.state.finished]

    def _ended(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self._cancelled.discard(job_id)
        self._wake.set()

    async def _renew_claims(self) -> None:
        while True:
            await asyncio.sleep(self.args.lease_s / 3)
            store = self.store
            for job_id, task in list(self._running.items()):
                if not await asyncio.to_thread(store.claim, job_id, self.owner, self.args.lease_s, time.time()):
                    _LOGGER.warning("job %s: lost its claim to another replica; leaving it to that one", job_id)
                    task.cancel()

    # ----- one job

    async def _run(self, store: JobStore, job_id: str) -> None:
        record = await asyncio.to_thread(store.load, job_id)
        try:
            if record.state.finished:
                return
            order = await asyncio.to_thread(store.load_order, job_id)
            info = await self.pipeline.check(order)
            lines = await asyncio.to_thread(store.load_lines, job_id)
            if lines is None:
                lines = await self.pipeline.lines(order)
                if not lines:
                    raise NothingToSpeak("the text has nothing to speak")
                await asyncio.to_thread(store.save_lines, job_id, lines)
            await self._speak(store, record, info, order, lines)
            await asyncio.to_thread(self._assemble, store, record, lines)
            record.finish(JobState.DONE)
            await asyncio.to_thread(store.save, record)
            await asyncio.to_thread(store.drop_lines, job_id)
            _LOGGER.info("job %s done: %d lines, %.1f s of audio in %.0f s", job_id, len(lines), record.audio_s,
                         record.finished_at - record.created_at)
            self.telemetry.job_finished("done", record.finished_at - record.created_at)
        except asyncio.CancelledError:
            if job_id in self._cancelled:
                await asyncio.to_thread(self._clean_up, store, job_id)
            raise  # otherwise the server stops, or another replica has the job: it stays resumable
        except _CancelledElsewhere:
            await asyncio.to_thread(self._clean_up, store, job_id)
        except EngineUnavailable as exc:  # no replica now (starting, rolling out): not the job's fault
            _LOGGER.warning("job %s waits for its engine: %s", job_id, exc)
            await asyncio.sleep(UNAVAILABLE_PAUSE_S)
        except Exception as exc:  # whatever ends a job is its error, for its owner to read
            record.finish(JobState.FAILED, f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))
            await asyncio.to_thread(store.save, record)
            await asyncio.to_thread(self._clean_up, store, job_id)
            _LOGGER.warning("job %s failed: %s", job_id, record.error)
            self.telemetry.job_finished("failed", record.finished_at - record.created_at)
        finally:
            await asyncio.to_thread(store.release, job_id, self.owner)

    @staticmethod
    def _clean_up(store: JobStore, job_id: str) -> None:
        store.drop_lines(job_id)
        store.drop_results(job_id)

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

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.args.lines_at_once, todo.qsize())):
                group.create_task(worker())
        await self._save_progress(store, record)

    async def _save_progress(self, store: JobStore, record: JobRecord) -> None:
        """Saves the record unless the job was cancelled meanwhile (by a request on another replica)."""
        current = await asyncio.to_thread(store.load, record.id)
        if current.state is JobState.CANCELLED:
            raise _CancelledElsewhere()
        await asyncio.to_thread(store.save, record.model_copy())

    async def _line_audio(self, job_id: str, index: int, info: EngineInfo, order: SpeechOrder,
                          line: Line) -> PcmChunk:
        """One line's audio as one chunk, tried again after failures that may pass."""
        part = self.pipeline.part(info, order, line, background=True)
        failures = 0
        while True:
            try:
                chunks = await self.pipeline.runner.collect(part.source, part.request, info.engine)
                break
            except CLIENT_ERRORS:
                raise
            except EngineUnavailable as exc:  # waits as long as it takes; the job itself failed nothing
                _LOGGER.warning("job %s line %d waits for its engine: %s", job_id, index, exc)
                await asyncio.sleep(UNAVAILABLE_PAUSE_S)
            except PASSING_ERRORS as exc:
                failures += 1
                if failures > self.args.line_retries:
                    raise
                _LOGGER.warning("job %s line %d: %s; trying again (%d of %d)", job_id, index, exc, failures,
                                self.args.line_retries)
                await asyncio.sleep(min(2.0 ** failures, 10.0))
        if not chunks:
            return PcmChunk(b"", 16_000)
        return chunks[0] if len(chunks) == 1 else await asyncio.to_thread(resample, chunks, chunks[0].sample_rate)

    # ----- the result

    def _assemble(self, store: JobStore, record: JobRecord, lines: list[Line]) -> None:
        """Joins the lines in order into `audio.<ext>` and the captions, at the highest rate among
        them (lines differ only with RVC voices of other rates), without holding the whole audio."""
        formats = [store.line_format(record.id, i) for i in range(len(lines))]
        rate = max((fmt[0] for fmt in formats if fmt and fmt[1]), default=24_000)
        audio_format = AUDIO_FORMATS[record.response_format].for_file()
        cues: list[Cue] = []
        chapters = _chapters(lines, [frames * rate / line_rate if frames else 0.0
                                     for line_rate, frames in (fmt or (rate, 0) for fmt in formats)], rate)

        def joined() -> Iterator[PcmChunk]:
            frames = 0
            for index, line in enumerate(lines):
                chunk = store.read_line(record.id, index)
                if not chunk.frames:
                    continue
                if chunk.sample_rate != rate:
                    chunk = resample([chunk], rate)
                cues.append(Cue(frames / rate, (frames + chunk.frames) / rate, line.text))
                frames += chunk.frames
                yield chunk

        def write(out: BinaryIO) -> None:
            if audio_format.name == "wav":
                write_wav(out, rate, joined())
                return
            encoder = AudioEncoder(audio_format, rate, out=out, chapters=chapters)
            for chunk in joined():
                encoder.write(chunk)
            encoder.finish()

        store.write_result(record.id, f"audio.{audio_format.extension}", write)
        store.write_result(record.id, "captions.srt", lambda out: out.write(srt(cues).encode()))
        store.write_result(record.id, "captions.vtt", lambda out: out.write(vtt(cues).encode()))


def _chapters(lines: list[Line], frames: list[float], rate: int) -> list[Chapter]:
    """A chapter from each line that begins one to the next (the last to the end), timed as the
    lines will be joined (frames at the joined rate)."""
    starts, elapsed = [], 0.0
    for line, line_frames in zip(lines, frames):
        if line.chapter:
            starts.append((elapsed / rate, line.chapter))
        elapsed += line_frames
    ends = [start for start, _title in starts[1:]] + [elapsed / rate]
    return [Chapter(start, end, title) for (start, title), end in zip(starts, ends)]
