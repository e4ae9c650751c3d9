"""Access control over real HTTP (uvicorn on 127.0.0.1 in front of the same app the ingress serves):
API keys, admin-only control endpoints, CORS, body size and per-client generation limits."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from elevenlabs.client import ElevenLabs
from elevenlabs.core.api_error import ApiError

from speechcore.api import create_app
from speechcore.config.access import AccessArgs
from tests.conftest import BUNDLED_VOICE, build_asgi_service
from tests.support import assert_text_stream_needs_the_key, decode_audio, serve_over_http

USER, ADMIN = "user-key-123", "admin-key-456"
SAMPLE_ARGS = {"/api/tts-generate": {"text_input": "Hello.", "character_voice_gen": BUNDLED_VOICE}}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory) -> Iterator[str]:
    service = build_asgi_service(tmp_path_factory, "access-root")
    access = AccessArgs(cors_origins=["https://allowed.example"], max_generations_per_client=1,
                        max_body_bytes=100_000)
    with serve_over_http(create_app(service, access, (frozenset({USER, ADMIN}), frozenset({ADMIN})))) as base:
        yield base


def _routes(base: str) -> list[tuple[str, str]]:
    """Every (method, path) the OpenAPI document names, path parameters filled in."""
    schema = httpx.get(f"{base}/openapi.json", headers={"Authorization": f"Bearer {USER}"}).json()
    return [(method.upper(), path.replace("{filename}", "x.wav")) for path, item in schema["paths"].items()
            for method in item]


def test_every_endpoint_but_the_public_ones_needs_a_key(keyed):
    routes = _routes(keyed)
    assert len(routes) >= 20
    for method, path in routes:
        answer = httpx.request(method, f"{keyed}{path}")
        if path in ("/api/ready", "/"):  # health check, and the static page (it asks for a key itself)
            assert answer.status_code == 200
            continue
        assert answer.status_code == 401, (method, path)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "API key" in answer.json()["detail"]
        wrong = httpx.request(method, f"{keyed}{path}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, (method, path)


CONTROL_ENDPOINTS = [("POST", "/api/reload"), ("POST", "/api/enginereload"), ("POST", "/api/deepspeed"),
                     ("POST", "/api/lowvramsetting"), ("PUT", "/api/openai-voicemap"), ("GET", "/api/reload_config"),
                     ("POST", "/api/save-tts-data"), ("POST", "/api/voice2rvc"), ("POST", "/api/voices/xtts"),
                     ("POST", "/api/voices/piper"), ("POST", "/api/voices/rvc"), ("DELETE", "/api/voices/xtts/a.wav")]
"""The endpoints that change what every user gets, or write files on the server (listing voices is not one)."""


@pytest.mark.parametrize("method, path", CONTROL_ENDPOINTS)
def test_a_user_key_on_a_control_endpoint_is_403(keyed, method, path):
    answer = httpx.request(method, f"{keyed}{path}", headers={"Authorization": f"Bearer {USER}"})
    assert answer.status_code == 403
    assert answer.json() == {"detail": "this endpoint needs an admin key"}


def test_the_right_keys_work(keyed):
    voices = httpx.get(f"{keyed}/api/voices", headers={"Authorization": f"Bearer {USER}"})
    assert voices.status_code == 200 and BUNDLED_VOICE in voices.json()["voices"]
    reloaded = httpx.get(f"{keyed}/api/reload_config", headers={"Authorization": f"Bearer {ADMIN}"})
    assert reloaded.status_code == 200
    generated = httpx.post(f"{keyed}/api/tts-generate", data=SAMPLE_ARGS["/api/tts-generate"],
                           headers={"Authorization": f"Bearer {USER}"}, timeout=60)
    assert generated.status_code == 200
    url = generated.json()["output_file_url"]
    audio = httpx.get(f"{keyed}{url}", params={"api_key": USER})  # how an audio player sends it
    assert audio.status_code == 200 and decode_audio(audio.content).sample_rate == 22050


def test_the_openai_sdk_with_its_api_key(keyed):
    client = openai.OpenAI(base_url=f"{keyed}/v1", api_key=USER)
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input="Keys work.", response_format="wav")
    decoded = decode_audio(speech.content)
    assert decoded.sample_rate > 0 and 0.3 < decoded.duration_s < 5
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed}/v1", api_key="wrong").audio.speech.create(
            model="tts-1", voice="alloy", input="No.", response_format="wav")


def test_the_elevenlabs_sdk_and_its_websocket_with_xi_api_key(keyed):
    """ElevenLabs' clients send the key as `xi-api-key`; a WebSocket without a key is refused at
    its handshake, before anything is spoken."""
    client = ElevenLabs(api_key=USER, base_url=keyed)
    pcm = b"".join(client.text_to_speech.convert(BUNDLED_VOICE, text="Keys work.", output_format="pcm_22050"))
    assert len(pcm) > 22050  # half a second
    with pytest.raises(ApiError) as refused:
        b"".join(ElevenLabs(api_key="wrong", base_url=keyed).text_to_speech.convert(BUNDLED_VOICE, text="No."))
    assert refused.value.status_code == 401
    assert_text_stream_needs_the_key(keyed, USER, BUNDLED_VOICE)


def test_cors_answers_only_the_configured_origin(keyed):
    for origin, allowed in (("https://allowed.example", True), ("https://evil.example", False)):
        preflight = httpx.options(f"{keyed}/api/tts-generate", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"})
        assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed
        assert preflight.headers.get("access-control-allow-credentials") is None


def test_bodies_over_the_limit_are_413(keyed):
    auth = {"Authorization": f"Bearer {USER}"}
    big = httpx.post(f"{keyed}/api/tts-generate", content=b"x" * 10_000_000, headers=auth)
    assert big.status_code == 413 and "larger than" in big.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"text_input=" + b"y" * 10_000

    chunked = httpx.post(f"{keyed}/api/tts-generate", content=chunks(), headers={
        **auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert chunked.status_code == 413


def test_a_client_beyond_its_generations_gets_429(keyed):
    auth = {"Authorization": f"Bearer {USER}"}
    text = " ".join(["This long text keeps the first stream busy for a while."] * 20)
    with httpx.stream("GET", f"{keyed}/api/tts-generate-streaming", headers=auth, timeout=60,
                      params={"text": text, "voice": BUNDLED_VOICE, "language": "en", "output_file": "s"}) as first:
        assert first.status_code == 200
        audio = first.iter_raw()  # held open: the first generation stays in flight
        next(audio)
        second = httpx.post(f"{keyed}/v1/audio/speech", headers=auth, json={
            "model": "tts-1", "voice": "alloy", "input": "Me too."})
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        assert "at most 1 generations" in second.json()["detail"]
    after = httpx.post(f"{keyed}/v1/audio/speech", headers=auth, timeout=60,
                       json={"model": "tts-1", "voice": "alloy", "input": "Now it is my turn.",
                             "response_format": "wav"})
    assert after.status_code == 200


def test_by_default_every_origin_may_call_the_api(server):
    """SillyTavern's provider calls from its own page's origin, with a preflight for tts-generate."""
    origin = "http://127.0.0.1:8000"
    preflight = server.client.options("/api/tts-generate", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "cache-control,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert {"cache-control", "content-type"} <= set(preflight.headers["access-control-allow-headers"].split(","))
    ready = server.client.get("/api/ready", headers={"Origin": origin})
    assert ready.headers["access-control-allow-origin"] == "*"


def test_a_job_is_its_submitters_alone(keyed):
    """Another key gets 404 for a job's id, its files and its cancellation, and does not see it listed."""
    user, admin = {"Authorization": f"Bearer {USER}"}, {"Authorization": f"Bearer {ADMIN}"}
    job = httpx.post(f"{keyed}/api/jobs", json={"text": "A job of one key.", "language": "en"}, headers=user).json()
    try:
        for method, path in [("GET", ""), ("GET", "/audio"), ("GET", "/captions.srt"), ("DELETE", "")]:
            answer = httpx.request(method, f"{keyed}/api/jobs/{job['id']}{path}", headers=admin)
            assert answer.status_code == 404, (method, path, answer.text)
        assert job["id"] not in [j["id"] for j in httpx.get(f"{keyed}/api/jobs", headers=admin).json()["jobs"]]
        assert httpx.get(f"{keyed}/api/jobs/{job['id']}", headers=user).status_code == 200
    finally:
        assert httpx.delete(f"{keyed}/api/jobs/{job['id']}", headers=user).status_code == 200
