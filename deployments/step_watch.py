"""StepWatch: how long the synthesis steps in flight on a replica have been running, so that a
health check can tell a busy replica (steps finish) from a hung one (a step never returns). Steps
are timed in the threads that run them: a step whose request was cancelled still occupies its
thread, and still counts, until it returns."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator


class StepWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._started: dict[int, float] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        with self._lock:
            step_id = next(self._ids)
            self._started[step_id] = self._clock()
        try:
            yield
        finally:
            with self._lock:
                del self._started[step_id]

    @property
    def in_flight(self) -> int:
        """Steps running now."""
        return len(self._started)

    def longest_running_s(self) -> float:
        """Seconds the oldest step in flight has run; 0 when none is."""
        with self._lock:
            oldest = min(self._started.values(), default=None)
        return 0.0 if oldest is None else self._clock() - oldest

    def check(self, limit_s: float) -> None:
        """Raises when a step has run longer than `limit_s` (the replica is then replaced)."""
        longest = self.longest_running_s()
        if longest > limit_s:
            raise RuntimeError(f"a synthesis step has been running for {longest:.0f} s (limit {limit_s:.0f} s): "
                               "the replica is hung")
