"""What the real engines cannot show on this CPU machine, on the real Serve of the test session with
the fake engine of tests/fake_engines.py behind a second ingress (route prefix `/fake`, its own
server root), both deployed declaratively by import path as serve_config.yaml deploys the rest:

- /api/deepspeed and /api/lowvramsetting roll the option out to the engine deployment (its
  user_config), /api/currentsettings reports it, and the choice is saved in model_settings.json;
- a model that passes the rollout's check but fails to load on the replicas is a model-failure,
  and every replica goes back to the model it served;
- an engine that stops sending: the request answers 504 after `engine_chunk_timeout_s`;
- a synthesis step that never returns fails the replica's health check, and Serve replaces it.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from ray import serve

from deployments.rollout import ServeRollout
from deployments.serve_control import serve_details
from tests.conftest import SERVE_PORT

pytestmark = pytest.mark.serve
ENGINE_APP, INGRESS_APP, PREFIX = "fake-engine", "fake-ingress", "/fake"
CHUNK_TIMEOUT_S, STEP_TIMEOUT_S = 3.0, 2.0


def _replicas() -> list[dict]:
    details = serve_details()
    return details["applications"][ENGINE_APP]["deployments"]["tts-piper"]["replicas"]


def _user_config() -> dict:
    details = serve_details()
    deployment = details["applications"][ENGINE_APP]["deployments"]["tts-piper"]
    return deployment["deployment_config"].get("user_config") or {}


@pytest.fixture(scope="module")
def fake(serve_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("fake-root")
    rollout = ServeRollout(timeout_s=180)
    asyncio.run(rollout.deploy_app({
        "name": ENGINE_APP, "route_prefix": None, "import_path": "tests.fake_engines:build_fake_engine_app",
        "args": {"engine": "piper", "root": str(root), "step_timeout_s": STEP_TIMEOUT_S,
                 "health_check_period_s": 1.0}}))
    asyncio.run(rollout.deploy_app({
        "name": INGRESS_APP, "route_prefix": PREFIX, "import_path": "serve_app:build_ingress_app",
        "args": {"root": str(root), "engines": {"piper": ENGINE_APP}, "default_engine": "piper",
                 "engine_chunk_timeout_s": CHUNK_TIMEOUT_S},
        "deployments": [{"name": "ingress", "ray_actor_options": {"num_cpus": 0}}]}))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{SERVE_PORT}{PREFIX}", timeout=120) as client:
            deadline = time.monotonic() + 60
            while client.get("/api/ready").text != "Ready":
                assert time.monotonic() < deadline, "the fake engine did not become ready"
                time.sleep(0.5)
            yield client, root
    finally:
        serve.delete(INGRESS_APP)
        serve.delete(ENGINE_APP)


@pytest.mark.parametrize("endpoint,param,option", [("/api/deepspeed", "new_deepspeed_value", "deepspeed"),
                                                   ("/api/lowvramsetting", "new_low_vram_value", "lowvram")])
def test_deepspeed_and_lowvram_roll_out_through_serve(fake, endpoint, param, option):
    client, root = fake
    before = client.get("/api/currentsettings").json()
    assert before[f"{option}_capable"] is True and before[f"{option}_enabled"] is False
    answer = client.post(endpoint, params={param: "true"}).json()
    assert answer["status"] == f"{option}-success", answer
    assert _user_config()[option] is True  # merged into the deployment's user_config by the rollout
    assert client.get("/api/currentsettings").json()[f"{option}_enabled"] is True
    saved = json.loads((root / "system" / "tts_engines" / "piper" / "model_settings.json").read_text())
    assert saved["settings"][f"{option}_enabled"] is True
    assert client.post(endpoint, params={param: "true"}).json()["status"] == "success"  # already so
    assert client.post(endpoint, params={param: "false"}).json()["status"] == f"{option}-success"
    assert client.get("/api/currentsettings").json()[f"{option}_enabled"] is False
    assert _user_config()[option] is False


def test_a_model_the_replicas_fail_to_load_is_a_model_failure_and_they_keep_the_old_one(fake):
    client, _root = fake
    answer = client.post("/api/reload", params={"tts_method": "unloadable"}).json()
    assert answer["status"] == "model-failure" and "not on this node" in answer["message"], answer
    assert client.get("/api/currentsettings").json()["current_model_loaded"] == "fake"
    assert _user_config()["model"] == "fake", "the deployment is configured with the model it serves"
    assert client.post("/api/tts-generate", data={"text_input": "Still here.", "character_voice_gen": "tone"}
                       ).json()["status"] == "generate-success"


def test_an_engine_that_stops_sending_is_a_504_and_its_hung_replica_is_replaced(fake):
    client, _ = fake
    served = client.post("/api/tts-generate", data={"text_input": "A tone.", "character_voice_gen": "tone"})
    assert served.status_code == 200
    before = {r["replica_id"] for r in _replicas() if r["state"] == "RUNNING"}

    started = time.monotonic()
    hung = client.post("/api/tts-generate", data={"text_input": "Never spoken.", "character_voice_gen": "hang"})
    waited = time.monotonic() - started
    assert hung.status_code == 504, hung.text
    assert hung.json()["status"] == "generate-failure"
    assert CHUNK_TIMEOUT_S <= waited < CHUNK_TIMEOUT_S + 10

    # The step is still running on the replica: its health check fails and Serve replaces it.
    deadline = time.monotonic() + 90
    while True:
        running = {r["replica_id"] for r in _replicas() if r["state"] == "RUNNING"}
        if running and not running & before:
            break
        assert time.monotonic() < deadline, f"the hung replica was not replaced: {_replicas()}"
        time.sleep(0.5)
    assert client.post("/api/tts-generate", data={"text_input": "Back.", "character_voice_gen": "tone"}
                       ).status_code == 200
