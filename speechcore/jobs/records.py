"""A job's record: its state and progress (job.json)."""

from __future__ import annotations

import time
from enum import Enum

from pydantic import BaseModel


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class JobRecord(BaseModel):
    """One job. `client` is a digest of who submitted it (their API key or address), never the key."""

    id: str
    client: str
    state: JobState = JobState.QUEUED
    response_format: str
    characters: int
    engine: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    lines_total: int | None = None
    """None until the text is planned into lines (sentences)."""
    characters_planned: int | None = None
    """Characters of the planned lines (after filtering), what `characters_done` counts toward."""
    lines_done: int = 0
    characters_done: int = 0
    audio_s: float = 0.0
    run_started_at: float | None = None
    """When this run of the job began (a resumed job starts a new run): the rate's clock."""
    characters_this_run: int = 0
    error: str | None = None

    def rate(self, now: float) -> float | None:
        """Characters spoken per second in this run so far."""
        if self.run_started_at is None or self.characters_this_run == 0:
            return None
        return self.characters_this_run / max(now - self.run_started_at, 1e-3)

    def eta_s(self, now: float) -> float | None:
        rate = self.rate(now)
        if rate is None or self.characters_planned is None or self.state is not JobState.RUNNING:
            return None
        return max(self.characters_planned - self.characters_done, 0) / rate

    def finish(self, state: JobState, error: str | None = None) -> None:
        self.state, self.error, self.finished_at = state, error, time.time()
