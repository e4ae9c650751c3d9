"""The request log line and the telemetry hooks, in process (real Piper): what each request
reports, the request id, text only at DEBUG. Over real Serve and Prometheus: tests/serve/test_observability.py."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from starlette.testclient import TestClient

from speechcore.api import create_app
from speechcore.config.access import AccessArgs
from speechcore.telemetry import RequestRecord, Telemetry
from tests.conftest import BUNDLED_VOICE, build_asgi_service
from tests.support import decode_audio

LOGGER = "speechcore.requests"


class RecordingTelemetry(Telemetry):
    def __init__(self) -> None:
        self.requests: list[RequestRecord] = []
        self.syntheses: list[tuple[str, int, float, float]] = []

    def request_finished(self, record: RequestRecord) -> None:
        self.requests.append(record)

    def synthesis_finished(self, engine: str, characters: int, audio_s: float, wall_s: float) -> None:
        self.syntheses.append((engine, characters, audio_s, wall_s))


@pytest.fixture(scope="module")
def telemetry() -> RecordingTelemetry:
    return RecordingTelemetry()


@pytest.fixture(scope="module")
def client(tmp_path_factory, telemetry):
    service = build_asgi_service(tmp_path_factory, "request-log-root", telemetry)
    with TestClient(create_app(service)) as test_client:
        yield test_client


def _lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage().removeprefix("request ")) for r in caplog.records if r.name == LOGGER]


def test_a_generation_reports_engine_voice_characters_and_audio(client, telemetry, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    text = "One request, one line in the log."
    answer = client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": BUNDLED_VOICE,
                                                     "narrator_enabled": "false"})
    assert answer.status_code == 200
    duration = decode_audio(client.get(answer.json()["output_file_url"]).content).duration_s
    request_id = answer.headers["x-request-id"]
    line = next(line for line in _lines(caplog) if line["request_id"] == request_id)
    assert line["endpoint"] == "/api/tts-generate" and line["status"] == 200 and line["outcome"] == "ok"
    assert line["engine"] == "piper" and line["voices"] == [BUNDLED_VOICE] and line["characters"] == len(text)
    assert line["audio_s"] == pytest.approx(duration, abs=0.01)
    assert "text" not in line and text not in caplog.text  # no text content at INFO
    record = next(r for r in telemetry.requests if r.request_id == request_id)
    assert record.first_audio_s is None  # a JSON answer carries no audio
    engine, characters, audio_s, wall_s = telemetry.syntheses[-1]
    assert (engine, characters) == ("piper", len(text)) and audio_s == pytest.approx(duration, abs=0.01)
    assert 0 < wall_s < record.latency_s


def test_narrator_segments_add_up_in_one_record(client, telemetry):
    before = len(telemetry.syntheses)
    text = 'The story begins. "Hello there," she said. It ended well.'
    answer = client.post("/api/tts-generate", data={"text_input": text, "narrator_enabled": "true",
                                                     "character_voice_gen": BUNDLED_VOICE,
                                                     "narrator_voice_gen": BUNDLED_VOICE})
    assert answer.status_code == 200
    segments = telemetry.syntheses[before:]
    assert len(segments) == 3
    record = next(r for r in telemetry.requests if r.request_id == answer.headers["x-request-id"])
    assert record.characters == sum(s[1] for s in segments)
    assert record.audio_s == pytest.approx(sum(s[2] for s in segments))


def test_a_stream_reports_its_time_to_first_audio(client, telemetry):
    answer = client.get("/api/tts-generate-streaming", params={
        "text": "First audio comes early. The rest follows.", "voice": BUNDLED_VOICE, "language": "en",
        "output_file": "x"})
    assert answer.status_code == 200
    record = next(r for r in telemetry.requests if r.request_id == answer.headers["x-request-id"])
    assert record.endpoint == "/api/tts-generate-streaming"
    assert record.first_audio_s is not None and 0 < record.first_audio_s <= record.latency_s
    assert record.audio_s == pytest.approx(decode_audio(answer.content).duration_s, abs=0.01)


def test_the_text_is_logged_only_at_debug(client, caplog):
    caplog.set_level(logging.DEBUG, LOGGER)
    text = "Debug logs may show what was spoken."
    answer = client.post("/api/tts-generate", data={"text_input": text, "narrator_enabled": "false"})
    line = next(line for line in _lines(caplog) if line["request_id"] == answer.headers["x-request-id"])
    assert line["text"] == text


def test_a_client_request_id_is_used_and_not_echoed_twice(client, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    answer = client.get("/api/ready", headers={"x-request-id": "client-chosen-id"})
    assert answer.headers.get_list("x-request-id") == []  # in-process: echoing is Serve's proxy's job
    assert any(line["request_id"] == "client-chosen-id" for line in _lines(caplog))
    assert len(client.get("/api/ready").headers.get_list("x-request-id")) == 1


def test_refused_requests_name_their_endpoint(tmp_path_factory):
    telemetry = RecordingTelemetry()
    access = AccessArgs(api_keys_env="TEST_KEYS")
    service = build_asgi_service(tmp_path_factory, "refused-root", telemetry)
    with TestClient(create_app(service, access, access.keys({"TEST_KEYS": "secret"}))) as keyed:
        assert keyed.get("/audio/some.wav").status_code == 401
        assert keyed.get("/no/such/path").status_code == 401
    assert [(r.endpoint, r.status) for r in telemetry.requests] == [("/audio/{filename}", 401), ("unmatched", 401)]


def test_a_text_stream_gets_one_line_for_its_session(client, caplog):
    """A WebSocket session is one line: its voice, every sentence's characters and audio."""
    caplog.set_level(logging.INFO, LOGGER)
    sentences = ["The first sentence.", "And the second one."]
    with client.websocket_connect(f"/v1/text-to-speech/{BUNDLED_VOICE}/stream-input?output_format=pcm_22050") as ws:
        for sentence in sentences:
            ws.send_json({"text": sentence + " "})
        ws.send_json({"text": ""})
        audio = 0
        while not (message := ws.receive_json()).get("isFinal"):
            audio += len(base64.b64decode(message["audio"]))
    line = next(line for line in _lines(caplog) if line["method"] == "WEBSOCKET")
    assert line["endpoint"] == "/v1/text-to-speech/{voice_id:path}/stream-input" and line["status"] == 101
    assert line["voices"] == [BUNDLED_VOICE] and line["characters"] == sum(map(len, sentences))
    assert line["audio_s"] == pytest.approx(audio / 2 / 22050, abs=0.05)
