"""StepTurns: the synthesis steps a replica computes at once (`slots`), handed out in turn.
Interactive requests go before background work (a job's lines): a waiting interactive step gets
the next free slot, and no background step starts while an interactive generation is under way
(`generation()`: between its steps too, while its last chunk is being sent), so the replica's
threads are theirs. A replica busy with a long job therefore delays a live user by what its
background steps already running cost (one sentence each at most), and while the live user is
served the job waits. Within a class, first come, first served."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class StepTurns:
    def __init__(self, slots: int):
        self._slots = slots
        self._busy = 0
        self._interactive = 0
        """Interactive steps running now."""
        self._live = 0
        """Interactive generations under way (running a step, waiting for one, or between two)."""
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())
        """Interactive waiters, then background ones."""

    @property
    def interactive_running(self) -> int:
        return self._interactive

    @contextlib.asynccontextmanager
    async def generation(self, background: bool = False) -> AsyncIterator[None]:
        """Holds off background steps for the whole of an interactive generation."""
        if background:
            yield
            return
        self._live += 1
        try:
            yield
        finally:
            self._live -= 1
            self._hand_out()

    @contextlib.asynccontextmanager
    async def turn(self, background: bool = False) -> AsyncIterator[None]:
        await self._acquire(background)
        try:
            yield
        finally:
            self._release(background)

    def _may_start(self, background: bool) -> bool:
        if self._busy >= self._slots:
            return False
        return not background or (self._interactive == 0 and self._live == 0 and not self._waiting[0])

    def _take(self, background: bool) -> None:
        self._busy += 1
        self._interactive += not background

    async def _acquire(self, background: bool) -> None:
        if self._may_start(background) and not self._waiting[background]:
            self._take(background)
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting[background].append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(background)  # handed the slot as it was cancelled: pass it on
            raise

    def _release(self, background: bool) -> None:
        self._busy -= 1
        self._interactive -= not background
        self._hand_out()

    def _hand_out(self) -> None:
        for kind in (False, True):
            queue = self._waiting[kind]
            while queue and self._may_start(kind):
                waiter = queue.popleft()
                if not waiter.done():
                    self._take(kind)
                    waiter.set_result(None)
