"""Access control through Serve's proxy and the ingress replica, not only in process: two more
ingress applications on the test session's Serve (route prefixes `/keyed` and `/open`, both in
front of the session's Piper), deployed declaratively by import path.

- `/keyed` reads its keys from environment variables named by `api_keys_env` / `admin_keys_env`,
  set in the application's runtime_env (how a cluster passes secrets): no key 401, a user key
  works, a user key on a control endpoint 403, the admin key works there.
- `/library` has keys and small voice-library limits: uploads need the admin key, keep to the
  per-file, per-upload and per-client limits, and a refused one writes nothing.
- `/open` has no keys and one generation per client: clients are told apart by their address as
  the ingress sees it behind the proxy (Serve's, or HAProxy), so two clients on 127.0.0.2 and
  127.0.0.3 get a limit each, and an X-Forwarded-For a client sends does not change its address.
"""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from ray import serve

from deployments.rollout import ServeRollout
from tests.conftest import BUNDLED_VOICE, SERVE_PORT
from tests.support import assert_text_stream_needs_the_key

pytestmark = [pytest.mark.serve, pytest.mark.both_fronts]
USER, ADMIN = "serve-user-key", "serve-admin-key"
LONG = " ".join(["This stream keeps its client's one generation busy for a while."] * 60)


def _ingress(name: str, prefix: str, root: str, access: dict, env: dict | None = None, **args) -> dict:
    return {"name": name, "route_prefix": prefix, "import_path": "serve_app:build_ingress_app",
            "args": {"root": root, "engines": {"piper": "piper"}, "default_engine": "piper", "access": access, **args},
            "runtime_env": {"env_vars": env or {}},
            "deployments": [{"name": "ingress", "ray_actor_options": {"num_cpus": 0}}]}


@pytest.fixture(scope="module")
def library_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("library-root")


@pytest.fixture(scope="module")
def prefixed(serve_server, tmp_path_factory, library_root):
    root = str(tmp_path_factory.mktemp("access-serve-root"))
    rollout = ServeRollout(timeout_s=180)
    asyncio.run(rollout.deploy_app(_ingress(
        "keyed", "/keyed", root, {"api_keys_env": "TEST_USER_KEYS", "admin_keys_env": "TEST_ADMIN_KEYS"},
        {"TEST_USER_KEYS": USER, "TEST_ADMIN_KEYS": ADMIN})))
    asyncio.run(rollout.deploy_app(_ingress("open", "/open", root, {"max_generations_per_client": 1})))
    asyncio.run(rollout.deploy_app(_ingress(
        "library", "/library", str(library_root),
        {"api_keys_env": "TEST_USER_KEYS", "admin_keys_env": "TEST_ADMIN_KEYS", "max_voice_upload_bytes": 2_000_000},
        {"TEST_USER_KEYS": USER, "TEST_ADMIN_KEYS": ADMIN},
        voices={"max_file_bytes": 1_000_000, "max_voices_per_client": 1})))
    try:
        yield f"http://127.0.0.1:{SERVE_PORT}"
    finally:
        for app in ("keyed", "open", "library"):
            serve.delete(app)


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


def test_a_text_stream_needs_a_key_at_its_handshake(prefixed):
    """ElevenLabs' input stream through the proxy: refused at the handshake without a key (401, as
    for HTTP), spoken with one sent as `xi-api-key`."""
    assert_text_stream_needs_the_key(f"{prefixed}/keyed", USER, BUNDLED_VOICE)


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
            # An address the client names itself is not its address (behind HAProxy as behind Serve's proxy).
            again = first.post(f"{base}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Me too."},
                               headers={"X-Forwarded-For": "203.0.113.9"})
            assert again.status_code == 429 and again.headers["retry-after"] == "1"
            other = second.post(f"{base}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy",
                                                                 "input": "Another client.", "response_format": "wav"})
            assert other.status_code == 200, other.text


def _tone_wav(seconds: float, rate: int = 22050) -> bytes:
    """A clip of sound (a warbling tone) as a WAV file: what a reference clip's checks accept."""
    t = np.arange(int(seconds * rate)) / rate
    samples = 0.3 * np.sin(2 * np.pi * (220 + 30 * np.sin(2 * np.pi * 3 * t)) * t)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((samples * 32767).astype("<i2").tobytes())
    return out.getvalue()


def test_voice_uploads_need_the_admin_key_and_keep_to_their_limits(prefixed, library_root):
    base = f"{prefixed}/library/api/voices"
    user, admin = {"Authorization": f"Bearer {USER}"}, {"Authorization": f"Bearer {ADMIN}"}
    clip = {"files": ("me.wav", _tone_wav(4.0))}

    assert httpx.post(f"{base}/xtts", data={"name": "first"}, files=clip).status_code == 401
    as_user = httpx.post(f"{base}/xtts", data={"name": "first"}, files=clip, headers=user)
    assert as_user.status_code == 403 and as_user.json() == {"detail": "this endpoint needs an admin key"}
    assert httpx.delete(f"{base}/xtts/first", headers=user).status_code == 403
    assert httpx.get(f"{prefixed}/library/api/voices", headers=user).status_code == 200  # listing: a user's call
    assert not (library_root / "voices").exists()

    stored = httpx.post(f"{base}/xtts", data={"name": "first"}, files=clip, headers=admin, timeout=60)
    assert stored.status_code == 201 and stored.json()["voice"] == "first.wav", stored.text
    over_quota = httpx.post(f"{base}/xtts", data={"name": "second"}, files=clip, headers=admin, timeout=60)
    assert over_quota.status_code == 403 and "quota" in over_quota.json()["detail"]

    big_file = httpx.post(f"{base}/xtts", data={"name": "first", "replace": "true"}, headers=admin, timeout=60,
                          files={"files": ("big.wav", _tone_wav(25.0))})  # 1.1 MB: one file over max_file_bytes
    assert big_file.status_code == 413 and "max_file_bytes" in big_file.json()["detail"]
    big_body = httpx.post(f"{base}/xtts", data={"name": "second"}, headers=admin, timeout=60,
                          files=[("files", ("a.wav", _tone_wav(25.0))), ("files", ("b.wav", _tone_wav(25.0)))])
    assert big_body.status_code == 413 and big_body.json() == {"detail": "request body larger than 2000000 bytes"}
    assert sorted(p.name for p in (library_root / "voices").iterdir()) == ["first.wav"]
    assert not any((library_root / "system" / "voice_library" / "incoming").iterdir())

    assert httpx.delete(f"{base}/xtts/first", headers=admin).status_code == 200
    again = httpx.post(f"{base}/xtts", data={"name": "second"}, files=clip, headers=admin, timeout=60)
    assert again.status_code == 201, again.text  # a removed voice frees its place
    assert httpx.delete(f"{base}/xtts/second", headers=admin).status_code == 200
