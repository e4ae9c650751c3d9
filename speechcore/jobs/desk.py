"""JobDesk: what clients ask of jobs: queue one (within the per-client and server limits), read
it, fetch its result, cancel it. A job is its submitter's: another client is told it does not exist."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from pathlib import Path

from ..config.app_args import JobArgs
from ..orders import SpeechOrder
from ..telemetry import Telemetry
from .records import JobRecord, JobState
from .scheduler import JobScheduler
from .store import UnknownJob

_LOGGER = logging.getLogger(__name__)


class JobLimit(RuntimeError):
    """A client, or the server, has as many unfinished jobs as it may (429)."""


class JobNotDone(RuntimeError):
    """The job's result is asked for before it is done (409)."""


def client_digest(client: str) -> str:
    """Who submitted a job, as stored: a digest, so that no API key is written to disk."""
    return hashlib.sha256(client.encode()).hexdigest()[:24]


class JobDesk:
    def __init__(self, args: JobArgs, scheduler: JobScheduler, telemetry: Telemetry):
        self.args, self.scheduler, self.telemetry = args, scheduler, telemetry

    async def submit(self, order: SpeechOrder, response_format: str, client: str) -> JobRecord:
        """Queues a job (checked by the caller) and answers its record; JobLimit beyond the limits."""
        store, owner = self.scheduler.store, client_digest(client)
        unfinished = await self.scheduler.unfinished(store)
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
        self.scheduler.wake()
        return record

    async def get(self, job_id: str, client: str) -> JobRecord:
        """The client's job; UnknownJob for another client's (its id tells nothing)."""
        record = await asyncio.to_thread(self.scheduler.store.load, job_id)
        if record.client != client_digest(client):
            raise UnknownJob(f"no job {job_id!r}")
        return record

    async def list(self, client: str) -> list[JobRecord]:
        owner = client_digest(client)
        return [r for r in await asyncio.to_thread(self.scheduler.store.records) if r.client == owner]

    async def result(self, job_id: str, client: str, name: str) -> Path:
        """A file of the job's result (`audio.<ext>`, `captions.srt`, `captions.vtt`)."""
        record = await self.get(job_id, client)
        if record.state is not JobState.DONE:
            raise JobNotDone(f"job {job_id} is {record.state.value}; its audio and captions are there once it is done")
        path = self.scheduler.store.result_path(job_id, name)
        if not path.is_file():
            raise UnknownJob(f"job {job_id} has no {name}")
        return path

    async def cancel(self, job_id: str, client: str) -> JobRecord:
        """Cancels an unfinished job (its lines in flight stop, its files go); removes a finished one."""
        record = await self.get(job_id, client)
        store = self.scheduler.store
        if record.state.finished:
            await asyncio.to_thread(store.remove, job_id)
            _LOGGER.info("job %s removed", job_id)
            return record
        record.finish(JobState.CANCELLED)
        await asyncio.to_thread(store.save, record)
        _LOGGER.info("job %s cancelled", job_id)
        self.telemetry.job_finished("cancelled", record.finished_at - record.created_at)
        if not self.scheduler.stop(job_id):  # queued, or running on another replica, which stops at its
            await asyncio.to_thread(store.drop_lines, job_id)  # next line and cleans up
        return record
