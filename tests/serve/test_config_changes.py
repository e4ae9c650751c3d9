"""Who starts an engine application and who changes Serve's config: `serve deploy` of the shipped
serve_config.yaml starts an engine with the model saved over the API (the builder applies it, as
the launcher and the ingress do), and two changes made at once by two processes (two ingress
replicas) both take effect, as they take a lock the whole cluster shares."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import time

import pytest
import yaml

from deployments.cluster_lock import ClusterLock, LockLost, LockTimeout
from deployments.rollout import RolloutBusy, ServeRollout
from deployments.serve_control import serve_details
from tests.conftest import PROJECT_DIR
from tests.support import configured_limits, decode_audio

pytestmark = pytest.mark.serve
coqui = pytest.mark.skipif(importlib.util.find_spec("TTS") is None, reason="the coqui extra is not installed")


def _shipped_entry(app: str, root) -> dict:
    """The application's entry of serve_config.yaml as shipped, with the server root set and no GPU
    asked for (this machine has none): what an operator's `serve deploy` sends."""
    config = yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text())
    entry = next(a for a in config["applications"] if a["name"] == app)
    entry["args"]["root"] = str(root)
    for deployment in entry["deployments"]:
        deployment.setdefault("ray_actor_options", {})["num_gpus"] = 0
    return entry


@coqui
def test_serve_deploy_of_the_shipped_config_starts_an_engine_with_its_saved_model(serve_server):
    from ray import serve

    client = serve_server.client
    try:
        assert client.post("/api/enginereload", params={"engine": "vits"}).json() == {"status": "engine-success"}
        assert client.post("/api/reload", params={"tts_method": "vits - tiny-vctk-22k"}).json() == \
            {"status": "model-success"}
        saved = json.loads((serve_server.root / "system" / "tts_engines" / "tts_engines.json").read_text())
        assert saved["selected_model"] == "vits - tiny-vctk-22k"
        serve.delete("vits")
        entry = _shipped_entry("vits", serve_server.root)
        assert all("user_config" not in d for d in entry["deployments"]), "the shipped file forces no model"
        asyncio.run(ServeRollout().deploy_app(entry))
        answer = client.post("/api/tts-generate", data={"text_input": "Which model serves me?",
                                                        "character_voice_gen": "p225"})
        assert answer.status_code == 200, answer.text
        rate = decode_audio(client.get(answer.json()["output_file_url"]).content).sample_rate
        assert rate == 22050, "the saved model (22 kHz), not the first model folder (16 kHz)"
    finally:
        client.post("/api/enginereload", params={"engine": "piper"})


def _settled(apps: list[str], timeout_s: float = 120) -> None:
    """Waits until none of `apps` is deploying."""
    deadline = time.monotonic() + timeout_s
    while any(str(serve_details()["applications"][app]["status"]).endswith("DEPLOYING") for app in apps):
        assert time.monotonic() < deadline, f"{apps} still deploying after {timeout_s} s"
        time.sleep(0.2)


@pytest.fixture
def queue_limits_put_back(serve_server):
    yield
    rollout = ServeRollout()
    for app in ("piper", "vits"):
        if app in serve_details()["applications"]:
            _settled([app])
            asyncio.run(rollout.update(app, f"tts-{app}", configured_limits(app)))


@coqui
def test_two_changes_made_at_once_by_two_processes_both_take_effect(serve_server, queue_limits_put_back):
    """Each ServeRollout stands for one ingress replica's: they share nothing but the cluster."""
    for round_ in range(3):
        _settled(["piper", "vits"])  # a change of one application can redeploy others in Serve's eyes
        limits = {"piper": 70 + round_, "vits": 80 + round_}
        start, errors = threading.Barrier(2), []

        def change(app: str, limit: int, start: threading.Barrier = start, errors: list = errors) -> None:
            rollout = ServeRollout()
            start.wait()
            deadline = time.monotonic() + 120
            while True:
                try:
                    asyncio.run(rollout.update(app, f"tts-{app}", {"max_queued_requests": limit}))
                    return
                except RolloutBusy:  # Serve redeploys the other application: asked again, as a user would
                    if time.monotonic() > deadline:
                        raise
                    _settled([app])
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=change, args=(app, limit)) for app, limit in limits.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        applications = serve_details()["applications"]
        deployed = {app: applications[app]["deployments"][f"tts-{app}"]["deployment_config"]["max_queued_requests"]
                    for app in limits}
        assert deployed == limits, f"round {round_}: one change overwrote the other"


def test_a_lock_whose_holder_died_is_taken_over_by_exactly_one_process(serve_server):
    from ray.experimental import internal_kv

    clock = [1000.0]
    locks = [ClusterLock("test-takeover", ttl_s=10, poll_s=0.01, clock=lambda: clock[0]) for _ in range(4)]
    dead = json.dumps({"holder": "gone", "expires": 990.0}).encode()  # its holder died 10 s ago
    assert not internal_kv._internal_kv_put(locks[0]._key(0), dead, overwrite=False)
    won, lost, start, all_lost = [], [], threading.Barrier(4), threading.Event()

    def take(lock: ClusterLock) -> None:
        start.wait()
        try:
            with lock.held(wait_s=0.5):
                won.append(lock)
                all_lost.wait(10)  # held until the others have given up
        except LockTimeout:
            lost.append(lock)
            if len(lost) == 3:
                all_lost.set()

    threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(won) == 1 and len(lost) == 3
    with locks[1].held(wait_s=0.5):  # released after the block: free at once
        pass


def test_a_holder_that_outlived_its_lease_knows_it_lost_the_lock(serve_server):
    clock = [2000.0]
    slow, other = (ClusterLock("test-lease", ttl_s=10, poll_s=0.01, clock=lambda: clock[0]) for _ in range(2))
    with slow.held(wait_s=0.5) as hold:
        hold.check()
        clock[0] += 11  # it stalled past its lease
        with other.held(wait_s=0.5):
            with pytest.raises(LockLost):
                hold.check()
