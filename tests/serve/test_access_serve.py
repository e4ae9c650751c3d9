"""Access control through Serve's proxy and the ingress replica, not only in process: two more
ingress applications on the test session's Serve (route prefixes `/keyed` and `/open`, both in
front of the session's Piper), deployed declaratively by import path.

- `/keyed` reads its keys from environment variables named by `api_keys_env` / `admin_keys_env`,
  set in the application's runtime_env (how a cluster passes secrets): no key 401, a user key
  works, a user key on a control endpoint 403, the admin key works there.
- `/open` has no keys and one generation per client: clients are told apart by their address as
  the ingress sees it behind the proxy, so two clients on 127.0.0.2 and 127.0.0.3 get a limit each.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from ray import serve

from deployments.rollout import ServeRollout
from tests.conftest import BUNDLED_VOICE, SERVE_PORT

pytestmark = pytest.mark.serve
USER, ADMIN = "serve-user-key", "serve-admin-key"
LONG = " ".join(["This stream keeps its client's one generation busy for a while."] * 60)


def _ingress(name: str, prefix: str, root: str, access: dict, env: dict | None = None) -> dict:
    return {"name": name, "route_prefix": prefix, "import_path": "serve_app:build_ingress_app",
            "args": {"root": root, "engines": {"piper": "piper"}, "default_engine": "piper", "access": access},
            "runtime_env": {"env_vars": env or {}},
            "deployments": [{"name": "ingress", "ray_actor_options": {"num_cpus": 0}}]}


@pytest.fixture(scope="module")
def prefixed(serve_server, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("access-serve-root"))
    rollout = ServeRollout(timeout_s=180)
    asyncio.run(rollout.deploy_app(_ingress(
        "keyed", "/keyed", root, {"api_keys_env": "TEST_USER_KEYS", "admin_keys_env": "TEST_ADMIN_KEYS"},
        {"TEST_USER_KEYS": USER, "TEST_ADMIN_KEYS": ADMIN})))
    asyncio.run(rollout.deploy_app(_ingress("open", "/open", root, {"max_generations_per_client": 1})))
    try:
        yield f"http://127.0.0.1:{SERVE_PORT}"
    finally:
        serve.delete("keyed")
        serve.delete("open")


def test_keys_from_the_replicas_environment(prefixed):
    base = f"{prefixed}/keyed"
    assert httpx.get(f"{base}/api/ready").text == "Ready"  # public
    assert httpx.get(f"{base}/api/voices").status_code == 401
    assert httpx.get(f"{base}/api/voices", headers={"Authorization": "Bearer wrong"}).status_code == 401
    voices = httpx.get(f"{base}/api/voices", headers={"Authorization": f"Bearer {USER}"})
    assert voices.status_code == 200 and BUNDLED_VOICE in voices.json()["voices"]
    control = httpx.get(f"{base}/api/reload_config", headers={"Authorization": f"Bearer {USER}"})
    assert control.status_code == 403 and control.json() == {"detail": "this endpoint needs an admin key"}
    assert httpx.get(f"{base}/api/reload_config", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    generated = httpx.post(f"{base}/api/tts-generate", timeout=60, headers={"Authorization": f"Bearer {USER}"},
                           data={"text_input": "Behind the proxy, with a key."})
    assert generated.status_code == 200 and generated.json()["status"] == "generate-success"


def test_clients_at_different_addresses_have_a_limit_each(prefixed):
    base = f"{prefixed}/open"
    first = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60)
    second = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=60)
    with first, second:
        with first.stream("POST", f"{base}/v1/audio/speech", json={
                "model": "tts-1", "input": LONG, "voice": "alloy", "speed": 0.25, "stream_format": "audio"}) as held:
            assert held.status_code == 200
            audio = held.iter_raw()  # kept: a dropped iterator closes the stream
            next(audio)  # the first client's generation is in flight
            again = first.post(f"{base}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Me too."})
            assert again.status_code == 429 and again.headers["retry-after"] == "1"
            other = second.post(f"{base}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy",
                                                                 "input": "Another client.", "response_format": "wav"})
            assert other.status_code == 200, other.text
