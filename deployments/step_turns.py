"""StepTurns: the synthesis steps a replica computes at once, handed out in turn. Interactive
requests go before background work (a job's lines): a waiting interactive step gets the next free
slot, so a replica busy with a long job delays a live user by one step at most. Within a class,
first come, first served."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class StepTurns:
    def __init__(self, slots: int):
        self._free = slots
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())
        """Interactive waiters, then background ones."""

    @contextlib.asynccontextmanager
    async def turn(self, background: bool = False) -> AsyncIterator[None]:
        await self._acquire(background)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, background: bool) -> None:
        if self._free and not any(self._waiting):
            self._free -= 1
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting[background].append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # handed the slot as it was cancelled: pass it on
            raise

    def _release(self) -> None:
        for queue in self._waiting:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1
