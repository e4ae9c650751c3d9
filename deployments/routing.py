"""LeastInFlightRouter: the Serve request router of the engine and RVC deployments.

Serve's default router picks two replicas at random and sends to the one with the shorter queue
as it last heard of it. A burst of calls routed in the same instant (a narrated text's segments,
clients arriving together) sees every replica's queue as empty, so the random order decides, and
three of four segments can land on one replica while the other idles; a replica whose queue
length is not cached yet loses every tie to one whose is. This router keeps Serve's procedure
around the choice (multiplexed voices first, same-node replicas first, a full replica is asked
again and passed over) and makes the choice itself: the replica with the fewest calls from this
caller, counting a call from the moment it is chosen (so a burst spreads), then the shorter queue
as last heard; ties are taken in turn.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from ray.serve.request_router import (
    FIFOMixin,
    LocalityMixin,
    MultiplexMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

_LOGGER = logging.getLogger("ray.serve")
CANDIDATES = 2
"""Replicas tried, in order, per routing attempt before Serve backs off (as its two choices)."""
CHOICE_TTL_S = 1.0
"""How long a choice that no call followed still counts as one (the replica turned out full, the
request was cancelled, another rank was taken): well beyond Serve's 0.1 s queue-length probe."""


class LeastInFlightRouter(FIFOMixin, LocalityMixin, MultiplexMixin, RequestRouter):

    def initialize_state(self, **kwargs: Any) -> None:
        self._in_flight: collections.Counter[ReplicaID] = collections.Counter()
        self._chosen: dict[int, tuple[ReplicaID, float]] = {}
        """The latest choice for each request not yet sent (by the PendingRequest's id): Serve asks
        again for a request while it backs off, and only the latest choice counts."""
        self._turn = 0
        _LOGGER.info("routing calls to %s: fewest calls first, ties in turn", self._deployment_id)

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if pending_request is not None and pending_request.metadata.multiplexed_model_id:
            candidate_ids = self.apply_multiplex_routing(pending_request=pending_request)
        else:
            candidate_ids = self.apply_locality_routing(pending_request=pending_request)
        candidate_ids = [replica_id for replica_id in candidate_ids if replica_id in self._replicas]
        if not candidate_ids:
            return []
        ordered = sorted(candidate_ids, key=lambda replica_id: replica_id.unique_id)
        self._turn = (self._turn + 1) % len(ordered)
        rotated = ordered[self._turn:] + ordered[:self._turn]
        self._forget_expired_choices()
        rotated.sort(key=self.load)  # stable: equals keep their turn order
        if pending_request is not None:
            self._chosen[id(pending_request)] = (rotated[0], time.monotonic())
        return [[self._replicas[replica_id]] for replica_id in rotated[:CANDIDATES]]

    def _forget_expired_choices(self) -> None:
        expired = time.monotonic() - CHOICE_TTL_S
        for request, (_replica, at) in list(self._chosen.items()):
            if at < expired:
                del self._chosen[request]

    def load(self, replica_id: ReplicaID) -> tuple[int, int]:
        """This caller's calls on the replica (in flight, or chosen and about to be sent), then
        its queue as last heard (Serve's cache: every caller's calls, lagging behind)."""
        pending = sum(1 for chosen, _at in self._chosen.values() if chosen == replica_id)
        return self._in_flight[replica_id] + pending, self.replica_queue_len_cache.get(replica_id) or 0

    def on_send_request(self, replica_id: ReplicaID) -> None:
        super().on_send_request(replica_id)
        # The request sent is not named here: drop the oldest choice of this replica, or else the
        # oldest choice (a request chosen for another replica, which was full or slow to answer).
        sent = min(self._chosen, key=lambda request: (self._chosen[request][0] != replica_id, self._chosen[request][1]),
                   default=None)
        if sent is not None:
            del self._chosen[sent]
        self._in_flight[replica_id] += 1

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        super().on_request_completed(replica_id, internal_request_id)
        if self._in_flight[replica_id] > 1:
            self._in_flight[replica_id] -= 1
        else:
            self._in_flight.pop(replica_id, None)

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        for gone in set(self._in_flight) - set(self._replicas):
            del self._in_flight[gone]
        for request, (chosen, _at) in list(self._chosen.items()):
            if chosen not in self._replicas:
                del self._chosen[request]
