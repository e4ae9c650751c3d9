"""What `/api/deployments` (and `alltalk-serve status`) make of Serve's view of a deployment: where its
running replicas compute (their reports), and the reason in Serve's message."""

from __future__ import annotations

from deployments.rollout import _deployment_view
from deployments.serve_control import message_reason


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


def test_a_replicas_traceback_comes_down_to_its_exception():
    failed = ("The deployment failed to start 3 times in a row. Error: ray::ServeReplica:vits:tts-vits (pid=1)\n"
              "RuntimeError: Traceback (most recent call last):\n"
              '  File "engines/coqui_common.py", line 30, in torch_device\n'
              "speechcore.engine_types.EngineError: device 'cuda' was requested but this replica sees no CUDA device\n")
    assert message_reason(failed) == "EngineError: device 'cuda' was requested but this replica sees no CUDA device"
    pending = "Deployment 'tts-xtts' has 1 replicas that have taken more than 30s to be scheduled."
    assert message_reason(pending) == pending and message_reason("") == ""
