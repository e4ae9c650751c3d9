"""The device a replica computes on (engines/devices.py), and each engine's view of CUDA."""

from __future__ import annotations

import pytest

from engines.devices import DeviceChoice, choose_device
from engines.piper import PiperEngine
from speechcore.config.paths import ServerPaths
from speechcore.engine_types import EngineError, EngineOptions


def _never_asked() -> bool:
    raise AssertionError("CUDA was looked for although the answer does not depend on it")


@pytest.mark.parametrize(("setting", "share", "sees_cuda", "device"), [
    ("auto", 0.5, True, "cuda"),
    ("auto", 0.0, None, "cpu"),  # no share: the CPU, without a look at CUDA
    ("cpu", 0.5, None, "cpu"),
    ("cuda", 0.0, None, "cuda"),  # the engine refuses to start without CUDA, clearly
])
def test_the_device_follows_the_setting_and_the_share(setting, share, sees_cuda, device):
    choice = choose_device(setting, share, _never_asked if sees_cuda is None else lambda: sees_cuda)
    assert choice == DeviceChoice(device)


def test_a_share_without_cuda_runs_on_the_cpu_and_says_why():
    choice = choose_device("auto", 0.25, lambda: False)
    assert choice.device == "cpu"
    assert "given 0.25 GPU" in choice.warning and "sees no CUDA device" in choice.warning


def test_piper_asks_onnxruntime_and_refuses_cuda_without_its_provider(tmp_path):
    # This machine's onnxruntime is the CPU build: on a GPU node with onnxruntime-gpu Piper would run on CUDA.
    assert PiperEngine.sees_cuda() is False
    with pytest.raises(EngineError, match="onnxruntime has no CUDA provider"):
        PiperEngine.create(ServerPaths.at(tmp_path), EngineOptions(device="cuda"))
    assert PiperEngine.create(ServerPaths.at(tmp_path), EngineOptions(device="cpu")).options.device == "cpu"
