"""§2 status endpoints: status codes, content types and JSON keys."""

from tests.conftest import BUNDLED_VOICE, SECOND_VOICE

CURRENT_SETTINGS_KEYS = {
    "engines_available", "current_engine_loaded", "models_available", "current_model_loaded",
    "manufacturer_name", "audio_format", "deepspeed_capable", "deepspeed_available", "deepspeed_enabled",
    "generationspeed_capable", "generationspeed_set", "lowvram_capable", "lowvram_enabled", "pitch_capable",
    "pitch_set", "repetitionpenalty_capable", "repetitionpenalty_set", "streaming_capable",
    "temperature_capable", "temperature_set", "ttsengines_installed", "languages_capable",
    "multivoice_capable", "multimodel_capable",
}


def test_ready_is_the_bare_word_with_a_content_type(server):
    response = server.client.get("/api/ready")
    assert response.status_code == 200
    assert response.text == "Ready"
    assert response.headers["content-type"].startswith("text/plain")


def test_voices_lists_the_bundled_voice_and_installed_ones_sorted(server):
    response = server.client.get("/api/voices")
    assert response.status_code == 200
    assert response.json() == {"status": "success", "voices": [BUNDLED_VOICE, SECOND_VOICE]}


def test_rvcvoices_answers_both_keys_and_only_disabled_while_rvc_is_off(server):
    (server.root / "models" / "rvc_voices" / "v").mkdir(parents=True, exist_ok=True)
    (server.root / "models" / "rvc_voices" / "v" / "v.pth").write_bytes(b"")
    response = server.client.get("/api/rvcvoices")
    assert response.status_code == 200
    assert response.json() == {"status": "success", "voices": ["Disabled"], "rvcvoices": ["Disabled"]}


def test_rvcvoices_lists_pth_files_relative_and_sorted_when_enabled(server):
    folder = server.root / "models" / "rvc_voices"
    for name in ("voiceB/voiceB.pth", "top.pth", "voiceA/voiceA.pth", "voiceA/added.index"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    server.write_config({"rvc_settings": {"rvc_enabled": True}})
    body = server.client.get("/api/rvcvoices").json()
    assert body["rvcvoices"] == body["voices"]
    assert body["rvcvoices"][0] == "Disabled"
    assert {"top.pth", "voiceA/voiceA.pth", "voiceB/voiceB.pth"} <= set(body["rvcvoices"])
    assert body["rvcvoices"][1:] == sorted(body["rvcvoices"][1:])
    assert not any(v.endswith(".index") for v in body["rvcvoices"])


def test_currentsettings_has_exactly_the_24_keys_with_true_values(server):
    response = server.client.get("/api/currentsettings")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == CURRENT_SETTINGS_KEYS
    assert body["engines_available"] == ["piper", "vits", "xtts"]
    assert body["current_engine_loaded"] == "piper"
    assert body["models_available"] == [{"name": "piper"}]
    assert body["current_model_loaded"] == "piper"
    assert body["manufacturer_name"] == "Piper"
    assert body["audio_format"] == "wav"
    assert body["generationspeed_capable"] is True
    assert body["streaming_capable"] is True
    assert body["deepspeed_capable"] is False and body["deepspeed_available"] is False
    assert body["lowvram_capable"] is False and body["lowvram_enabled"] is False
    assert body["generationspeed_set"] == 1
    assert body["temperature_set"] == 0.75
    assert body["repetitionpenalty_set"] == 10


def test_settings_json_returns_the_whole_config(server):
    server.write_config({"api_def": {"api_language": "fr"}})
    body = server.client.get("/settings-json").json()
    assert body["api_def"]["api_language"] == "fr"
    assert body["rvc_settings"]["rvc_enabled"] is False
    assert body["output_folder"] == "outputs"


def test_root_page_is_the_web_page_over_the_public_api(server):
    """The page itself is static; what it shows comes from the API in the browser (tests/browser)."""
    response = server.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for call in ("/api/currentsettings", "/api/voices", "/api/tts-generate", "/api/tts-generate-streaming",
                 "/api/ready", 'href="/docs"'):
        assert call in response.text
    assert '"zh-cn"' in response.text and "__LANGUAGES__" not in response.text
