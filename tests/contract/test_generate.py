"""§4 `/api/tts-generate` in standard mode, and the files it produces (§4.2, §6B.2, §6B.3)."""

import re
from pathlib import Path

import pytest

from tests.support import decode_audio

SENTENCE_170 = ("The quick brown fox jumps over the lazy dog while the evening sun paints the quiet valley "
                "in warm shades of gold, and a distant bell rings slowly across the hills.")
assert 160 <= len(SENTENCE_170) <= 180

SILLYTAVERN_FORM = {
    "text_input": "Hello from SillyTavern.", "text_filtering": "standard",
    "character_voice_gen": "en_US-joe-medium.onnx",
    "narrator_enabled": "false", "narrator_voice_gen": "Please set a voice", "text_not_inside": "character",
    "language": "en", "output_file_name": "st_output", "output_file_timestamp": "true", "autoplay": "false",
    "autoplay_volume": "0.8",
}


def outputs(server) -> set[Path]:
    return set(server.outputs.iterdir()) if server.outputs.exists() else set()


def generate(server, **form):
    return server.client.post("/api/tts-generate", data=form)


def fetch_audio(server, url):
    response = server.client.get(url)
    assert response.status_code == 200
    return decode_audio(response.content)


def test_generate_success_shape_and_a_playable_wav(server):
    response = generate(server, text_input=SENTENCE_170)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "output_file_path", "output_file_url", "output_cache_url"}
    assert body["status"] == "generate-success"
    name = Path(body["output_file_path"]).name
    assert re.fullmatch(r"myoutputfile_\d{10}[0-9a-f]{5}\.wav", name)
    assert body["output_file_url"] == f"/audio/{name}"
    assert body["output_cache_url"] == f"/audiocache/{name}"
    assert Path(body["output_file_path"]).is_file()
    audio = fetch_audio(server, body["output_file_url"])
    assert (audio.codec, audio.sample_rate, audio.channels) == ("pcm_s16le", 22050, 1)
    assert 5.0 < audio.duration_s < 30.0


def test_duration_grows_with_the_text(server):
    short = fetch_audio(server, generate(server, text_input="Hi there.").json()["output_file_url"])
    long = fetch_audio(server, generate(server, text_input=SENTENCE_170).json()["output_file_url"])
    assert 0.3 < short.duration_s < long.duration_s / 3


def test_speed_shortens_the_audio(server):
    text = "Speed makes this sentence shorter or longer."
    normal = fetch_audio(server, generate(server, text_input=text).json()["output_file_url"])
    fast = fetch_audio(server, generate(server, text_input=text, speed="2").json()["output_file_url"])
    assert fast.duration_s < normal.duration_s * 0.7


def test_sillytavern_request_shape_succeeds(server):
    body = generate(server, **SILLYTAVERN_FORM).json()
    assert body["status"] == "generate-success"
    assert body["output_file_url"].startswith("/audio/st_output_")


def test_empty_fields_fall_back_to_defaults(server):
    body = generate(server, text_input="Empty means absent.", speed="", language="", character_voice_gen="").json()
    assert body["status"] == "generate-success"


def test_timestamp_off_keeps_the_name_and_adds_only_a_random_part(server):
    body = generate(server, text_input="No timestamp.", output_file_name="previewvoice",
                    output_file_timestamp="false").json()
    assert re.fullmatch(r"/audio/previewvoice_[0-9a-f]{5}\.wav", body["output_file_url"])


def test_legacy_api_gives_absolute_urls(server):
    server.write_config({"api_def": {"api_use_legacy_api": True, "api_legacy_ip_address": "10.0.0.5"}})
    body = generate(server, text_input="Legacy.").json()
    assert body["output_file_url"].startswith("http://10.0.0.5:7851/audio/")
    assert body["output_cache_url"].startswith("http://10.0.0.5:7851/audiocache/")


@pytest.mark.parametrize("form", [{"text_input": ""}, {}, {"text_input": "x", "speed": "fast"},
                                  {"text_input": "x", "autoplay": "perhaps"}])
def test_missing_text_or_unparsable_numbers_are_422(server, form):
    before = outputs(server)
    response = server.client.post("/api/tts-generate", data=form)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    assert outputs(server) == before


def test_a_json_body_is_422(server):
    assert server.client.post("/api/tts-generate", json={"text_input": "hi"}).status_code == 422


def test_invalid_fields_are_reported_together_and_nothing_is_written(server):
    before = outputs(server)
    response = generate(server, text_input="x", language="xx", speed="5", temperature="0", narrator_enabled="maybe",
                        output_file_name="bad.name", autoplay_volume="1.5")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error"}
    assert [line.split(":")[0] for line in body["error"].split("\n")] == [
        "narrator_enabled", "language", "output_file_name", "autoplay_volume", "speed", "temperature"]
    assert outputs(server) == before


def test_text_over_the_maximum_is_400(server):
    response = generate(server, text_input="a" * 2001)
    assert response.status_code == 400
    assert response.json()["error"].startswith("text_input:")


@pytest.mark.parametrize("field", ["character_voice_gen", "narrator_voice_gen"])
@pytest.mark.parametrize("voice", ["../../etc/passwd", "/etc/hostname", "../piper/en_US-joe-medium.onnx"])
def test_voices_that_leave_their_folder_are_400_and_nothing_is_written(server, field, voice):
    before = outputs(server)
    response = generate(server, text_input="Escape attempt.", **{field: voice})
    assert response.status_code == 400
    assert field in response.json()["error"]
    assert outputs(server) == before


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "x.wav", "with-dash"])
def test_output_names_outside_the_rule_are_400_and_nothing_is_written(server, name):
    before = outputs(server)
    response = generate(server, text_input="Name attempt.", output_file_name=name)
    assert response.status_code == 400
    assert response.json()["error"].startswith("output_file_name:")
    assert outputs(server) == before
    assert not Path("/tmp/abs.wav").exists()


def test_an_unknown_voice_is_a_clear_400(server):
    response = generate(server, text_input="Who am I?", character_voice_gen="en_GB-nobody.onnx")
    assert response.status_code == 400
    assert response.json()["status"] == "generate-failure"
    assert "en_GB-nobody.onnx" in response.json()["error"]


def test_text_that_filters_to_nothing_is_a_clear_400(server):
    response = generate(server, text_input="@#%&*")
    assert response.status_code == 400
    assert response.json()["status"] == "generate-failure"


def test_audio_and_audiocache_headers(server):
    name = Path(generate(server, text_input="Headers.").json()["output_file_path"]).name
    audio = server.client.get(f"/audio/{name}")
    assert audio.status_code == 200
    assert audio.headers["content-type"] in ("audio/x-wav", "audio/wav")
    assert int(audio.headers["content-length"]) == len(audio.content) > 44
    assert audio.headers["etag"] and audio.headers["last-modified"]  # players revalidate rather than fetch again
    cached = server.client.get(f"/audiocache/{name}")
    assert cached.status_code == 200
    assert cached.headers["cache-control"] == "public, max-age=604800"
    assert cached.headers["content-disposition"].startswith("attachment")
    assert name in cached.headers["content-disposition"]
    assert cached.content == audio.content


def test_audio_files_serve_byte_ranges_for_players_that_seek(server):
    name = Path(generate(server, text_input="A player seeks into this file.").json()["output_file_path"]).name
    whole = server.client.get(f"/audio/{name}").content
    part = server.client.get(f"/audio/{name}", headers={"Range": "bytes=44-1043"})
    assert part.status_code == 206
    assert part.content == whole[44:1044]
    assert part.headers["content-range"] == f"bytes 44-1043/{len(whole)}"


@pytest.mark.parametrize("path", ["/audio/missing.wav", "/audiocache/missing.wav", "/audio/..%2Fconfignew.json",
                                  "/audio/.partial-x", "/audiocache/..%2F..%2Fetc%2Fpasswd"])
def test_missing_or_escaping_files_are_404(server, path):
    (server.root / "confignew.json").write_text("{}")
    assert server.client.get(path).status_code == 404


def test_auto_language_that_cannot_be_detected_is_the_contracts_400(server):
    before = outputs(server)
    response = generate(server, text_input="12345 67890", language="auto")
    assert response.status_code == 400
    assert response.json() == {"status": "generate-failure", "error": "Could not detect language"}
    assert outputs(server) == before


def test_auto_language_with_words_generates(server):
    assert generate(server, text_input="Bonjour tout le monde, comment allez-vous?", language="auto").status_code == 200
