"""The device a replica computes on, and how `/api/deployments` shows it."""

from __future__ import annotations

import pytest

from deployments.rollout import _deployment_view
from engines.devices import DeviceChoice, choose_device


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


def test_an_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        choose_device("tpu", 0.0)


def _report(device: str, warning: str | None, gpu_ids: list[str]) -> dict:
    return {"options": {}, "error": None,
            "placement": {"device": device, "warning": warning, "gpu_share": 0.5, "gpu_ids": gpu_ids}}


def test_the_deployment_view_shows_where_running_replicas_compute():
    warning = "given 0.5 GPU but sees no CUDA device: running on the CPU"
    reports = {"a": _report("cpu", warning, ["0"]), "b": _report("cpu", warning, ["0"]),
               "c": _report("cuda", None, ["1"]), "d": _report("cpu", "stale", ["1"])}
    deployment = {"name": "tts-xtts", "status": "HEALTHY", "target_num_replicas": 4, "replicas": [
        {"replica_id": "a", "state": "RUNNING"}, {"replica_id": "b", "state": "RUNNING"},
        {"replica_id": "c", "state": "RUNNING"}, {"replica_id": "d", "state": "STOPPING"},
        {"replica_id": "e", "state": "STARTING"}]}
    view = _deployment_view(deployment, reports.get)
    assert view["replicas"] == {"RUNNING": 3, "STOPPING": 1, "STARTING": 1}
    assert view["devices"] == {"cpu": 2, "cuda": 1} and view["warnings"] == [warning]
    assert set(view["placements"]) == {"a", "b", "c"} and view["placements"]["c"]["gpu_ids"] == ["1"]


def test_a_deployment_without_reports_shows_no_placement():
    view = _deployment_view({"name": "ingress", "replicas": [{"replica_id": "x", "state": "RUNNING"}]},
                            lambda _replica: None)
    assert "devices" not in view and "warnings" not in view and "placements" not in view
