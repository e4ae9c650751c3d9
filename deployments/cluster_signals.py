"""Signals that reach every replica on every node through Ray's GCS key-value store.

ClusterStopSignal: `/api/stop-generation`. The ingress raises a stop epoch; engine replicas watch it
(WatchedStopEpoch: one read every STOP_POLL_S, not one per chunk) and end generations that started
before it.

ClusterDrain: the server is stopping. Whoever stops it (the embedded server on SIGTERM) asks for a
drain; every ingress replica then refuses new generations and reports how many it still runs,
until the stopper sees none left (or its time is up) and shuts Serve down.

ReplicaReports: what each engine replica serves after its last reconfigure (the options it was
given, and the error if it could not apply them), so that a rollout can tell whether every replica
really serves what was asked, and where each engine or RVC replica computes (its placement), which
`/api/deployments` shows."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.experimental import internal_kv

from speechcore.api.generations import GenerationsInFlight

_LOGGER = logging.getLogger("ray.serve")
_KEY = b"alltalk-serve/stop-epoch"
_DRAIN_KEY = b"alltalk-serve/drain"
_IN_FLIGHT_PREFIX = b"alltalk-serve/drain-in-flight/"
_REPORT_PREFIX = b"alltalk-serve/replica-report/"
DRAIN_POLL_S = 0.5
"""How often an ingress replica looks for a drain request, and reports while draining."""
STOP_POLL_S = 1.0
"""How often an engine replica reads the stop epoch: a stop reaches its generations within this
and one chunk (the ingress ends its side of them at once). Every 0.2 s cost a single-sentence
request about 7 ms on a 2-core machine (bench.request_path): the read competes with synthesis."""


class ClusterStopSignal:
    def current(self) -> int:
        value = internal_kv._internal_kv_get(_KEY)
        return int(value) if value else 0

    def raise_stop(self) -> int:
        epoch = time.time_ns()
        internal_kv._internal_kv_put(_KEY, str(epoch).encode(), overwrite=True)
        return epoch


class WatchedStopEpoch:
    """The stop epoch as an engine replica sees it (an EngineHost's StopEpochs): read every
    `poll_s` by `watch()`, running for the replica's life, and read fresh when a generation starts."""

    def __init__(self, signal: ClusterStopSignal, poll_s: float = STOP_POLL_S):
        self.signal, self.poll_s = signal, poll_s
        self._latest = 0

    def latest(self) -> int:
        return self._latest

    async def now(self) -> int:
        current = await asyncio.to_thread(self.signal.current)
        self._latest = max(self._latest, current)
        return current

    async def watch(self) -> None:
        failing = False
        while True:
            try:
                await self.now()
                if failing:
                    _LOGGER.info("the stop epoch can be read again")
                failing = False
            except Exception as exc:  # noqa: BLE001 - the GCS briefly unreachable: keep the last epoch, try again
                if not failing:  # once per outage, not every poll
                    _LOGGER.warning("could not read the stop epoch (%s); trying again every %.1f s", exc, self.poll_s)
                failing = True
            await asyncio.sleep(self.poll_s)


class ClusterDrain:
    def request(self) -> None:
        for key in internal_kv._internal_kv_list(_IN_FLIGHT_PREFIX):
            internal_kv._internal_kv_del(key)
        internal_kv._internal_kv_put(_DRAIN_KEY, b"1", overwrite=True)

    def requested(self) -> bool:
        return internal_kv._internal_kv_get(_DRAIN_KEY) is not None

    def report(self, replica: str, in_flight: int) -> None:
        internal_kv._internal_kv_put(_IN_FLIGHT_PREFIX + replica.encode(), str(in_flight).encode(), overwrite=True)

    def in_flight(self) -> dict[str, int]:
        """Generations in flight per ingress replica that has reported since the drain began."""
        return {key.removeprefix(_IN_FLIGHT_PREFIX).decode(): int(internal_kv._internal_kv_get(key) or 0)
                for key in internal_kv._internal_kv_list(_IN_FLIGHT_PREFIX)}

    def clear(self) -> None:
        for key in internal_kv._internal_kv_list(_IN_FLIGHT_PREFIX):
            internal_kv._internal_kv_del(key)
        internal_kv._internal_kv_del(_DRAIN_KEY)

    async def follow(self, replica: str, generations: GenerationsInFlight) -> None:
        """Runs in an ingress replica: once a drain is requested, sets `generations.stopping` and
        reports the replica's generations in flight until the replica is stopped."""
        while not await asyncio.to_thread(self.requested):
            await asyncio.sleep(DRAIN_POLL_S)
        generations.stopping = True
        _LOGGER.info("the server is stopping: no new generation; %d in flight", generations.total)
        while True:
            await asyncio.to_thread(self.report, replica, generations.total)
            await asyncio.sleep(DRAIN_POLL_S)


@dataclass(frozen=True)
class ReplicaPlacement:
    device: str
    """`cpu` or `cuda`."""
    warning: str | None
    """Why it does not use the GPU share it was given (engines/devices.py)."""
    gpu_share: float
    """The GPUs Serve gave it (its num_gpus); on CUDA, its engine caps its memory at this share."""
    gpu_ids: list[str]
    """The GPUs it sees (Ray sets CUDA_VISIBLE_DEVICES to them)."""


class ReplicaReports:
    """One report per engine or RVC replica (RVC's has no options), kept in the GCS key-value
    store under its application: `{"options": <user_config it was given>, "error": <why it keeps
    serving something else> | None, "placement": ReplicaPlacement's fields}`."""

    @staticmethod
    def _key(app: str, replica: str) -> bytes:
        return _REPORT_PREFIX + f"{app}/{replica}".encode()

    def publish(self, app: str, replica: str, options: dict[str, Any], error: str | None,
                placement: ReplicaPlacement) -> None:
        report = json.dumps({"options": options, "error": error, "placement": dataclasses.asdict(placement)})
        internal_kv._internal_kv_put(self._key(app, replica), report.encode(), overwrite=True)

    def read(self, app: str, replica: str) -> dict[str, Any] | None:
        value = internal_kv._internal_kv_get(self._key(app, replica))
        return json.loads(value) if value else None

    def remove(self, app: str, replica: str) -> None:
        internal_kv._internal_kv_del(self._key(app, replica))


class OwnReport:
    """The report of the replica this runs in (ReplicaReports), at its placement."""

    def __init__(self, placement: ReplicaPlacement):
        replica = serve.get_replica_context().replica_id
        self.placement = placement
        self._key = (replica.deployment_id.app_name, replica.unique_id)
        self._reports = ReplicaReports()

    async def publish(self, options: dict[str, Any], error: str | None = None) -> None:
        await asyncio.to_thread(self._reports.publish, *self._key, options, error, self.placement)

    def remove(self) -> None:
        self._reports.remove(*self._key)


def release_replica(watching: asyncio.Task[None], report: OwnReport) -> None:
    """What an engine or RVC replica leaves when it goes (its `__del__`): the stop-epoch watch
    stopped and its report removed, each as far as it still can be."""
    with contextlib.suppress(Exception):  # best effort: readers only look at running replicas
        watching.get_loop().call_soon_threadsafe(watching.cancel)
    with contextlib.suppress(Exception):
        report.remove()
