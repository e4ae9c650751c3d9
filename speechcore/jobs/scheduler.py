"""JobScheduler: which jobs run on this ingress replica. Oldest first, `jobs_at_once` at a time,
each claimed with a lease (JobStore.claim) that is renewed while it runs, so that no two replicas
run the same job and a job whose replica is gone passes to another. It also expires finished
jobs after the output retention setting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ..config.app_args import JobArgs
from ..telemetry import Telemetry
from .executor import JobExecutor, clean_up
from .records import JobRecord, JobState
from .store import JobStore

_LOGGER = logging.getLogger(__name__)


class JobScheduler:
    def __init__(self, folder: Callable[[], Path], executor: JobExecutor, args: JobArgs, telemetry: Telemetry,
                 poll_s: float = 2.0, keep_s: Callable[[], float | None] = lambda: None,
                 expire_every_s: float = 600.0):
        """`folder`: where jobs live, and `keep_s`: how long finished jobs are kept (None: for
        ever); both read at each use, so that they follow the settings."""
        self._folder, self._keep_s = folder, keep_s
        self.executor, self.args, self.telemetry = executor, args, telemetry
        self.poll_s, self.expire_every_s = poll_s, expire_every_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._running: dict[str, asyncio.Task[None]] = {}
        self._finished: set[str] = set()
        """Jobs seen finished: they never run again, so the folder scans skip reading them."""
        self._cancelled: set[str] = set()
        self._wake = asyncio.Event()

    @property
    def store(self) -> JobStore:
        return JobStore(self._folder())

    def wake(self) -> None:
        """Looks for claimable jobs now rather than at the next poll (a job was queued)."""
        self._wake.set()

    def stop(self, job_id: str) -> bool:
        """Stops the job if it runs here, removing its lines; False when it does not run here."""
        task = self._running.get(job_id)
        if task is None:
            return False
        self._cancelled.add(job_id)
        task.cancel()
        return True

    async def unfinished(self, store: JobStore) -> list[JobRecord]:
        records = await asyncio.to_thread(store.records, self._finished)
        self._finished.update(r.id for r in records if r.state.finished)
        return [r for r in records if not r.state.finished]

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
        unfinished = await self.unfinished(store)
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

    async def _run(self, store: JobStore, job_id: str) -> None:
        try:
            await self.executor.run(store, job_id)
        except asyncio.CancelledError:
            if job_id in self._cancelled:
                await asyncio.to_thread(clean_up, store, job_id)
            raise  # otherwise the server stops, or another replica has the job: it stays resumable
        finally:
            await asyncio.to_thread(store.release, job_id, self.owner)
