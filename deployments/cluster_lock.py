"""ClusterLock: a lock that every process of the Ray cluster sees, kept in the GCS key-value store
(as the cluster signals are). Changes to Serve's declarative config read the whole config, change
one deployment and deploy it all again: two ingress replicas doing that at once would each
overwrite the other's change, so they take this lock around it.

Taking it is a put-if-absent of the lock key. A holder that dies leaves its lock to expire after
`ttl_s`; the first process to see it expired wins a takeover ticket named after that very lock
value (another put-if-absent, so exactly one process wins it) and then replaces the lock."""

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


class ClusterLock:
    def __init__(self, name: str, ttl_s: float, poll_s: float = 0.1, clock: Callable[[], float] = time.time):
        self.key = _PREFIX + name.encode()
        self.ttl_s, self.poll_s, self.clock = ttl_s, poll_s, clock

    @contextlib.contextmanager
    def held(self, wait_s: float) -> Iterator[None]:
        """Holds the lock for the block; LockTimeout after `wait_s` of waiting for it."""
        token = self._acquire(wait_s)
        try:
            yield
        finally:
            self._release(token)

    def _acquire(self, wait_s: float) -> bytes:
        deadline = time.monotonic() + wait_s
        while True:
            token = json.dumps({"holder": f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}",
                                "expires": self.clock() + self.ttl_s}).encode()
            if not internal_kv._internal_kv_put(self.key, token, overwrite=False):
                return token
            held = internal_kv._internal_kv_get(self.key)
            if held is not None and self._expired(held) and self._take_over(held, token):
                return token
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{self.key.decode()} is held by another process")
            time.sleep(self.poll_s)

    def _expired(self, held: bytes) -> bool:
        try:
            return float(json.loads(held)["expires"]) < self.clock()
        except (ValueError, KeyError, TypeError):
            return True  # not a lock this code wrote

    def _take_over(self, held: bytes, token: bytes) -> bool:
        ticket = self.key + b"/takeover/" + held
        if internal_kv._internal_kv_put(ticket, b"1", overwrite=False):
            return False  # another process won the takeover of this expired lock
        internal_kv._internal_kv_put(self.key, token, overwrite=True)
        return True

    def _release(self, token: bytes) -> None:
        if internal_kv._internal_kv_get(self.key) == token:
            internal_kv._internal_kv_del(self.key)
