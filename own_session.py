"""The embedded server in a process session of its own, beneath a thin parent that takes the stop
signals. Service managers and terminals often signal a whole process group at once (systemd's
default, `timeout`, supervisors, Ctrl-C, a closed terminal's SIGHUP); Ray's GCS, raylet and
replicas, started by the server, would get the signal in the same instant and die under the
requests in flight. So `alltalk-serve run` starts the server as a child in a new session (its own
process group, with Ray's processes beneath it) and passes each SIGTERM, SIGINT and SIGHUP on to
it: the server drains, stops Ray itself and exits, and the parent exits with its status. If the
parent is killed outright (SIGKILL), the kernel kills the child (and Ray's processes, which die
with their parent) at once, so nothing is left behind."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

_LOGGER = logging.getLogger("alltalk_serve")
PASSED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def supported() -> bool:
    """Only Linux has the parent-death signal this relies on; elsewhere the server runs in place."""
    return sys.platform.startswith("linux")


def _die_with_parent(parent: int) -> None:
    """Runs in the child before it executes the server: SIGKILL when the parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(120)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(120)


def run(argv: Sequence[str]) -> int:
    """Runs `argv` in a new session and returns its exit status (128 + N for a signal N)."""
    parent = os.getpid()
    child = subprocess.Popen(list(argv), start_new_session=True, preexec_fn=lambda: _die_with_parent(parent))

    def pass_on(signum: int, _frame: object) -> None:
        _LOGGER.info("%s: passed on to the server (pid %d)", signal.Signals(signum).name, child.pid)
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for signum in PASSED_ON:
        signal.signal(signum, pass_on)
    status = child.wait()
    return status if status >= 0 else 128 - status
