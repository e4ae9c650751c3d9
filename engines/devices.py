"""Which device a replica computes on, from its `device` setting and the GPU share Serve gave it.

`auto` (the shipped default, as in AllTalk) takes CUDA where the replica was given a GPU share and
sees a CUDA device, else the CPU; a replica that was given a share it cannot use says so (the log,
its report, `alltalk-serve status`), since it holds that share of the cluster while it runs on the
CPU. `cuda` is for operators who want a hard failure instead: the engine refuses to start without
CUDA (engines/coqui_common.py), and the launcher shows why. `cpu` is the CPU whatever the share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    """`cpu` or `cuda`."""
    warning: str | None = None
    """Why the replica runs elsewhere than its GPU share asks (None when it does not)."""


def cuda_visible() -> bool:
    """Whether this process sees a CUDA device: through torch where it is installed (the coqui and
    RVC extras), else through onnxruntime's providers (Piper alone)."""
    try:
        import torch
    except ImportError:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return torch.cuda.is_available()


def choose_device(setting: str, gpu_share: float, sees_cuda: Callable[[], bool] = cuda_visible) -> DeviceChoice:
    """The device for a replica whose setting is `setting` and whose share is `gpu_share` GPUs;
    `sees_cuda` is asked only when the answer depends on it."""
    if setting not in DEVICES:
        raise ValueError(f"unknown device {setting!r}; choose from {', '.join(DEVICES)}")
    if setting != "auto":
        return DeviceChoice(setting)
    if gpu_share <= 0:
        return DeviceChoice("cpu")
    if sees_cuda():
        return DeviceChoice("cuda")
    return DeviceChoice("cpu", f"given {gpu_share:g} GPU but sees no CUDA device: running on the CPU "
                               "(set device: cpu and num_gpus: 0 to free the share, device: cuda to fail instead)")
