"""Stop requests: every generation in flight registers a flag that `/api/stop-generation` sets;
consumers stop between chunks, and stop waiting for the next chunk at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

T = TypeVar("T")


class GenerationStopped(Exception):
    """The generation was stopped by a stop request."""


class StopRegistry:
    """The stop flags of the generations this process is running."""

    def __init__(self) -> None:
        self._flags: set[asyncio.Event] = set()

    @contextlib.contextmanager
    def track(self) -> Iterator[asyncio.Event]:
        flag = asyncio.Event()
        self._flags.add(flag)
        try:
            yield flag
        finally:
            self._flags.discard(flag)

    def stop_all(self) -> int:
        """Sets every flag; returns how many generations were running."""
        for flag in self._flags:
            flag.set()
        return len(self._flags)

    @property
    def active(self) -> int:
        return len(self._flags)


async def until_stopped(source: AsyncIterator[T], stop: asyncio.Event) -> AsyncIterator[T]:
    """Yields from `source` until it ends or `stop` is set (then raises GenerationStopped without
    waiting for the item in progress). `source` is closed either way, which cancels it upstream."""
    stop_wait = asyncio.ensure_future(stop.wait())
    try:
        while True:
            next_item = asyncio.ensure_future(anext(source))
            await asyncio.wait({next_item, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                next_item.cancel()
                with contextlib.suppress(BaseException):
                    await next_item
                raise GenerationStopped()
            try:
                item = next_item.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stop_wait.cancel()
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
