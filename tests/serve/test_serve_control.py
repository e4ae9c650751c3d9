"""deployments/serve_control.py is the one place that uses Serve's private client: what the
rollouts, the status page and the launcher read from it must still be there after a Ray upgrade."""

from __future__ import annotations

import time

import pytest
from ray import serve
from ray.serve.schema import ServeDeploySchema

from deployments.serve_control import deploy_config, serve_details

pytestmark = pytest.mark.serve


def test_the_details_carry_what_rollouts_and_status_read(serve_server):
    details = serve_details()
    assert {"applications", "http_options", "proxy_location"} <= set(details)
    piper = details["applications"]["piper"]
    assert {"status", "message", "deployed_app_config", "last_deployed_time_s", "deployments"} <= set(piper)
    assert piper["deployed_app_config"]["import_path"] == "serve_app:build_engine_app"
    deployment = piper["deployments"]["tts-piper"]
    assert {"status", "status_trigger", "message", "deployment_config", "replicas", "target_num_replicas"} <= \
        set(deployment)
    assert "user_config" in deployment["deployment_config"]
    replica = deployment["replicas"][0]
    assert {"replica_id", "state", "node_id"} <= set(replica)
    assert str(replica["state"]).endswith("RUNNING")


def test_a_whole_config_deploys_beside_nothing_else_it_does_not_name(serve_server):
    """deploy_config runs exactly the applications given: the running ones plus a new one here."""
    running = [app["deployed_app_config"] for app in serve_details()["applications"].values()
               if app.get("deployed_app_config")]
    extra = {"name": "control-probe", "route_prefix": None, "import_path": "tests.fake_engines:build_fake_engine_app",
             "args": {"engine": "piper", "root": str(serve_server.root)}}
    details = serve_details()
    config = ServeDeploySchema.model_validate({"applications": [*running, extra],
                                               "http_options": details["http_options"],
                                               "proxy_location": details["proxy_location"]})
    try:
        deploy_config(config)
        deadline = time.monotonic() + 120
        while serve.status().applications.get("control-probe") is None or \
                serve.status().applications["control-probe"].status != "RUNNING":
            assert time.monotonic() < deadline, "the probe application did not start"
            time.sleep(0.5)
        assert set(serve_details()["applications"]) >= {"alltalk", "piper", "control-probe"}
    finally:
        serve.delete("control-probe")
