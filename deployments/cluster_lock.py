"""ClusterLock: a lock that every process of the Ray cluster sees, kept in the GCS key-value store
(as the cluster signals are). Changes to Serve's declarative config read the whole config, change
one deployment and deploy it all again: two ingress replicas doing that at once would each
overwrite the other's change, so they take this lock around it.

The lock is a sequence of numbered keys, each written once by put-if-absent: the highest is the
one in force. Taking the lock means writing the next number, which only one of any processes
racing for it can do, whether the last holder released its key or died holding it (its key then
expires after `ttl_s`). A holder releases by marking its own key, and checks before it acts that
no later key has been written (a holder that outlived its lease has lost it)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator

from ray.experimental import internal_kv

_PREFIX = b"alltalk-serve/lock/"


class LockTimeout(RuntimeError):
    """The lock stayed taken for longer than the caller waits."""


class LockLost(RuntimeError):
    """The holder's lease ran out and another process took the lock."""


class Hold:
    """One holding of the lock."""

    def __init__(self, lock: "ClusterLock", number: int):
        self.lock, self.number = lock, number

    def check(self) -> None:
        """Raises LockLost unless this holding is still the one in force."""
        if self.lock._latest()[0] != self.number:
            raise LockLost(f"{self.lock.name}: held past its lease and taken by another process")


class ClusterLock:
    def __init__(self, name: str, ttl_s: float, poll_s: float = 0.1, clock: Callable[[], float] = time.time):
        self.name, self.ttl_s, self.poll_s, self.clock = name, ttl_s, poll_s, clock
        self._prefix = _PREFIX + name.encode() + b"/"

    @contextlib.contextmanager
    def held(self, wait_s: float) -> Iterator[Hold]:
        """Holds the lock for the block; LockTimeout after `wait_s` of waiting for it."""
        hold = self._acquire(wait_s)
        try:
            yield hold
        finally:
            self._release(hold.number)

    def taken(self) -> bool:
        """Whether a process holds the lock now: it reads, changes and submits Serve's config
        (the rollout that follows runs without the lock)."""
        return not self._free(self._latest()[1])

    def _key(self, number: int) -> bytes:
        return self._prefix + str(number).encode()

    def _latest(self) -> tuple[int, dict[str, object] | None]:
        """The highest number written (-1 for none) and its value (None when it was just removed
        by a later holder, whose number is then higher)."""
        numbers = [int(key.removeprefix(self._prefix)) for key in internal_kv._internal_kv_list(self._prefix)
                   if key.removeprefix(self._prefix).isdigit()]
        if not numbers:
            return -1, None
        number = max(numbers)
        value = internal_kv._internal_kv_get(self._key(number))
        try:
            return number, json.loads(value) if value is not None else None
        except ValueError:
            return number, {}

    def _free(self, held: dict[str, object] | None) -> bool:
        if held is None:
            return True
        expires = held.get("expires")
        return bool(held.get("released")) or not isinstance(expires, (int, float)) or expires < self.clock()

    def _acquire(self, wait_s: float) -> Hold:
        deadline = time.monotonic() + wait_s
        holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        while True:
            number, held = self._latest()
            if self._free(held):
                token = json.dumps({"holder": holder, "expires": self.clock() + self.ttl_s}).encode()
                if not internal_kv._internal_kv_put(self._key(number + 1), token, overwrite=False):
                    for older in range(max(number - 8, 0), number + 1):  # earlier holdings, now void
                        internal_kv._internal_kv_del(self._key(older))
                    return Hold(self, number + 1)
                continue  # another process wrote that number first: look again
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{self.name} is held by {held.get('holder') if held else 'another process'}")
            time.sleep(self.poll_s)

    def _release(self, number: int) -> None:
        """Marks the holding released; its key stays (numbers only count up) until the next holder
        removes it."""
        internal_kv._internal_kv_put(self._key(number), json.dumps({"released": True}).encode(), overwrite=True)
