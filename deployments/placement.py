"""Where a replica computes (ReplicaPlacement): the GPU share and GPUs Serve gave it (its
`num_gpus`), and the device its setting takes there (engines/devices.py). Engine replicas report it
(ReplicaReports), and `/api/deployments` and `alltalk-serve status` show it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import ray

from engines.devices import choose_device
from speechcore.engine_types import DeviceSetting

from .cluster_signals import ReplicaPlacement

_LOGGER = logging.getLogger("ray.serve")


def place_replica(setting: DeviceSetting, sees_cuda: Callable[[], bool], who: str) -> ReplicaPlacement:
    """This replica's placement; a share it cannot use is logged as `who`'s warning."""
    context = ray.get_runtime_context()
    gpu_share = float(context.get_assigned_resources().get("GPU", 0.0))
    choice = choose_device(setting, gpu_share, sees_cuda)
    if choice.warning:
        _LOGGER.warning("%s: %s", who, choice.warning)
    gpu_ids = [str(gpu) for gpu in context.get_accelerator_ids().get("GPU", [])]
    return ReplicaPlacement(choice.device, choice.warning, gpu_share, gpu_ids)
