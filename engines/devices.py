"""Which device a replica computes on, from its `device` setting and the GPU share Serve gave it.

`auto` (the shipped default, as in AllTalk) takes CUDA where the replica was given a GPU share and
its engine can run on CUDA in this process, else the CPU; a replica that was given a share it cannot
use says so (its log, its report, `alltalk-serve status`), since it holds that share of the cluster
while it runs on the CPU. `cuda` is for operators who want a hard failure instead: the engine
refuses to start without CUDA, and the launcher shows why. `cpu` is the CPU whatever the share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from speechcore.engine_types import DeviceSetting


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    """`cpu` or `cuda`."""
    warning: str | None = None
    """Why the replica runs elsewhere than its GPU share asks (None when it does not)."""


def torch_sees_cuda() -> bool:
    """Whether torch (the Coqui engines, RVC) sees a CUDA device in this process."""
    import torch

    return torch.cuda.is_available()


def onnxruntime_sees_cuda() -> bool:
    """Whether onnxruntime (Piper) can run on CUDA here: the onnxruntime-gpu build has the provider."""
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def choose_device(setting: DeviceSetting, gpu_share: float, sees_cuda: Callable[[], bool]) -> DeviceChoice:
    """The device for a replica whose setting is `setting` and whose share is `gpu_share` GPUs;
    `sees_cuda` (the engine's) is asked only when the answer depends on it."""
    if setting != "auto":
        return DeviceChoice(setting)
    if gpu_share <= 0:
        return DeviceChoice("cpu")
    if sees_cuda():
        return DeviceChoice("cuda")
    return DeviceChoice("cpu", f"given {gpu_share:g} GPU but sees no CUDA device: running on the CPU "
                               "(set device: cpu and num_gpus: 0 to free the share, device: cuda to fail instead)")
