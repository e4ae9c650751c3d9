"""ClusterStopSignal: `/api/stop-generation` reaches every replica on every node. The ingress
raises a stop epoch in Ray's GCS key-value store; engine replicas read it between chunks and end
generations that started before it."""

from __future__ import annotations

import time

from ray.experimental import internal_kv

_KEY = b"alltalk-serve/stop-epoch"


class ClusterStopSignal:
    def current(self) -> int:
        value = internal_kv._internal_kv_get(_KEY)
        return int(value) if value else 0

    def raise_stop(self) -> int:
        epoch = time.time_ns()
        internal_kv._internal_kv_put(_KEY, str(epoch).encode(), overwrite=True)
        return epoch
