"""RVC voice conversion through the API (§2.3, §4.4–§4.7, §6.2, §6B.1, §9): tiny random RVC
voices (tests/rvc_models.py), so the audio is noise; rates, durations, routing and errors are real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.rvc_models import RVC_VOICES
from tests.support import decode_audio

pytest.importorskip("pyworld", reason="the rvc extra is not installed")

VOICE = "en_US-joe-medium.onnx"
TEXT = "The lighthouse keeper climbed the stairs. The storm was coming in from the west."


def enable_rvc(server, **settings) -> None:
    server.write_config({"rvc_settings": {"rvc_enabled": True, "f0method": "pm", **settings}})


def generate(server, **form):
    base = {"text_input": TEXT, "character_voice_gen": VOICE, "narrator_enabled": "false",
            "output_file_name": "rvctest"}
    return server.client.post("/api/tts-generate", data={**base, **form})


def fetch(server, body):
    response = server.client.get(body["output_file_url"])
    assert response.status_code == 200
    return decode_audio(response.content)


def outputs(server) -> set[Path]:
    return set(server.outputs.iterdir()) if server.outputs.exists() else set()


def test_rvcvoices_lists_models_only_when_enabled(server):
    assert server.client.get("/api/rvcvoices").json() == {"status": "success", "voices": ["Disabled"],
                                                          "rvcvoices": ["Disabled"]}
    enable_rvc(server)
    body = server.client.get("/api/rvcvoices").json()
    assert body["rvcvoices"] == ["Disabled", *sorted(RVC_VOICES)] == body["voices"]


def test_generation_converts_to_the_voice_models_rate_and_keeps_the_duration(server):
    plain = generate(server)
    assert plain.status_code == 200
    reference = fetch(server, plain.json())
    enable_rvc(server)
    converted = generate(server, rvccharacter_voice_gen="char/char.pth", rvccharacter_pitch="3")
    assert converted.status_code == 200, converted.text
    audio = fetch(server, converted.json())
    assert reference.sample_rate == 22050 and audio.sample_rate == 40000
    assert abs(audio.duration_s - reference.duration_s) < 0.1 * reference.duration_s


@pytest.mark.parametrize("voice, rate", [("narr.pth", 48000), ("plain/plain.pth", 32000)])
def test_v1_and_no_f0_voices_convert(server, voice, rate):
    enable_rvc(server, f0method="harvest")
    response = generate(server, rvccharacter_voice_gen=voice)
    assert response.status_code == 200, response.text
    assert fetch(server, response.json()).sample_rate == rate


def test_rvc_fields_are_ignored_while_rvc_is_off(server):
    response = generate(server, rvccharacter_voice_gen="char/char.pth")
    assert response.status_code == 200
    assert fetch(server, response.json()).sample_rate == 22050


def test_the_configured_default_voice_applies_when_the_request_names_none(server):
    enable_rvc(server, rvc_char_model_file="narr.pth")
    response = generate(server)
    assert response.status_code == 200
    assert fetch(server, response.json()).sample_rate == 48000


def test_a_missing_model_is_a_clear_404_and_writes_nothing(server):
    enable_rvc(server)
    before = outputs(server)
    response = generate(server, rvccharacter_voice_gen="nobody/nobody.pth")
    assert response.status_code == 404
    assert response.json() == {"status": "generate-failure",
                               "error": "RVC model not found: models/rvc_voices/nobody/nobody.pth"}
    assert outputs(server) == before


@pytest.mark.parametrize("field", ["rvccharacter_voice_gen", "rvcnarrator_voice_gen"])
@pytest.mark.parametrize("name", ["../../confignew.json", "/etc/passwd", "..\\..\\x.pth", "a/../../b.pth"])
def test_traversal_in_rvc_names_is_refused(server, field, name):
    enable_rvc(server)
    response = generate(server, narrator_enabled="true", **{field: name})
    assert response.status_code == 400
    assert field in response.json()["error"]


def test_unusable_rvc_settings_are_a_400(server):
    enable_rvc(server, f0method="guesswork")
    response = generate(server, rvccharacter_voice_gen="char/char.pth")
    assert response.status_code == 400
    assert "f0 method" in response.json()["error"]


def test_narrator_mode_uses_the_character_and_narrator_rvc_voices(server):
    enable_rvc(server)
    text = '*The night was cold and still.* "Who goes there at this hour?" *She lifted the lamp.*'
    form = {"text_input": text, "narrator_enabled": "true", "narrator_voice_gen": VOICE,
            "rvccharacter_voice_gen": "char/char.pth", "rvcnarrator_voice_gen": "narr.pth"}
    response = generate(server, **form)
    assert response.status_code == 200, response.text
    audio = fetch(server, response.json())
    assert audio.sample_rate == 44100 and audio.duration_s > 2.0
    # Each role reaches its own model: a missing narrator model fails the request, naming it.
    missing = generate(server, **{**form, "rvcnarrator_voice_gen": "gone.pth"})
    assert missing.status_code == 404 and "gone.pth" in missing.json()["error"]
    missing = generate(server, **{**form, "rvccharacter_voice_gen": "lost.pth"})
    assert missing.status_code == 404 and "lost.pth" in missing.json()["error"]


def test_preview_with_rvc(server):
    enable_rvc(server)
    response = server.client.post("/api/previewvoice/", data={"voice": VOICE, "rvccharacter_voice_gen": "narr.pth",
                                                              "rvccharacter_pitch": "-2"})
    assert response.status_code == 200, response.text
    assert fetch(server, response.json()).sample_rate == 48000
    missing = server.client.post("/api/previewvoice/", data={"voice": VOICE, "rvccharacter_voice_gen": "x/y.pth"})
    assert missing.status_code == 404
    assert missing.json() == {"error": "File not found: RVC model not found: models/rvc_voices/x/y.pth"}


def test_streaming_with_rvc(server):
    enable_rvc(server)
    response = generate(server, streaming="true", rvccharacter_voice_gen="char/char.pth")
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert int.from_bytes(response.content[24:28], "little") == 40000
    frames = (len(response.content) - 44) // 2
    assert 2.0 < frames / 40000 < 12.0


@pytest.mark.parametrize("stream_format", [None, "audio"])
def test_openai_uses_the_configured_character_rvc_voice(server, stream_format):
    enable_rvc(server, rvc_char_model_file="char/char.pth")
    body = {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "wav"}
    if stream_format:
        body["stream_format"] = stream_format
    response = server.client.post("/v1/audio/speech", json=body)
    assert response.status_code == 200, response.text
    if stream_format:
        assert int.from_bytes(response.content[24:28], "little") == 40000
    else:
        assert decode_audio(response.content).sample_rate == 40000


def test_openai_with_a_missing_configured_rvc_voice_is_a_clear_error(server):
    enable_rvc(server, rvc_char_model_file="missing.pth")
    response = server.client.post("/v1/audio/speech", json={"model": "tts-1", "input": TEXT, "voice": "alloy"})
    assert response.status_code == 404
    assert "missing.pth" in json.dumps(response.json())


def _made_file(server) -> Path:
    response = generate(server)
    assert response.status_code == 200
    return Path(response.json()["output_file_path"])


def test_voice2rvc_converts_a_file_of_the_output_folder(server):
    source = _made_file(server)
    enable_rvc(server)
    for given in (str(source), source.name):  # the absolute path generation returned, or the name
        response = server.client.post("/api/voice2rvc", data={
            "input_tts_path": given, "output_rvc_path": "converted.wav", "pth_name": "narr.pth", "pitch": "2",
            "method": "dio"})
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "success", "output_path": "converted.wav"}
        audio = decode_audio((server.outputs / "converted.wav").read_bytes())
        assert audio.sample_rate == 48000
        assert abs(audio.duration_s - decode_audio(source.read_bytes()).duration_s) < 0.1


@pytest.mark.parametrize("field, value", [
    ("input_tts_path", "../confignew.json"), ("input_tts_path", "/etc/passwd"),
    ("output_rvc_path", "../escaped.wav"), ("output_rvc_path", "/tmp/escaped.wav"),
    ("output_rvc_path", "sub/dir.wav"), ("pth_name", "../../x.pth"), ("pitch", "2.5"), ("method", "magic"),
])
def test_voice2rvc_refuses_bad_input(server, field, value):
    source = _made_file(server)
    enable_rvc(server)
    form = {"input_tts_path": source.name, "output_rvc_path": "out.wav", "pth_name": "narr.pth", "pitch": "0",
            "method": "pm", field: value}
    response = server.client.post("/api/voice2rvc", data=form)
    assert response.status_code == 400
    assert "detail" in response.json()
    assert not (server.outputs / "out.wav").exists()
    assert not (server.root / "escaped.wav").exists() and not Path("/tmp/escaped.wav").exists()


def test_voice2rvc_disabled_voice_and_disabled_rvc(server):
    source = _made_file(server)
    form = {"input_tts_path": source.name, "output_rvc_path": "out.wav", "pth_name": "narr.pth", "pitch": "0",
            "method": "pm"}
    off = server.client.post("/api/voice2rvc", data=form)
    assert off.status_code == 400 and off.json()["status"] == "error"
    enable_rvc(server)
    disabled = server.client.post("/api/voice2rvc", data={**form, "pth_name": "Disabled"})
    assert disabled.status_code == 200 and disabled.json()["status"] == "error"
    missing = server.client.post("/api/voice2rvc", data={**form, "input_tts_path": "nothing.wav"})
    assert missing.status_code == 404
