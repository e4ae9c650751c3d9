"""JobRunner: the long-text jobs of one ingress replica, in four parts: the desk (what clients
ask, with quotas: desk.py), the scheduler (which jobs run here, claimed with leases:
scheduler.py), the executor (one job's lines, with retries by error type: executor.py, retry.py)
and the assembly of the result (assembly.py). Jobs live on disk (store.py, schema.py), so any
replica can answer for any job and resume it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config.app_args import JobArgs
from ..pipeline import SpeechPipeline
from ..telemetry import Telemetry
from .desk import JobDesk
from .executor import JobExecutor
from .scheduler import JobScheduler


class JobRunner:
    def __init__(self, folder: Callable[[], Path], pipeline: SpeechPipeline, args: JobArgs,
                 telemetry: Telemetry | None = None, poll_s: float = 2.0,
                 keep_s: Callable[[], float | None] = lambda: None, expire_every_s: float = 600.0):
        telemetry = telemetry or Telemetry()
        self.scheduler = JobScheduler(folder, JobExecutor(pipeline, args, telemetry), args, telemetry, poll_s,
                                      keep_s, expire_every_s)
        self.desk = JobDesk(args, self.scheduler, telemetry)
