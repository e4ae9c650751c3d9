"""confignew.json, tts_engines.json and model_settings.json: defaults, overrides, bad files."""

import json

import pytest

from speechcore.config.alltalk import ConfigFileError
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.engine_types import EngineInfo

INFO = EngineInfo(engine="piper", manufacturer_name="Piper", audio_format="wav", models=["piper"],
                  current_model="piper", voices=["v.onnx"], default_voice="v.onnx")


def test_missing_files_give_alltalks_defaults(tmp_path):
    store = SettingsStore(ServerPaths.at(tmp_path))
    assert store.config.api_def.api_port_number == 7851
    assert store.config.api_def.api_max_characters == 2000
    assert store.config.output_folder == "outputs"
    assert store.engines.engine_loaded == "piper"
    settings = store.model_settings(INFO)
    assert settings.settings.def_character_voice == "v.onnx"
    assert settings.openai_voices.nova == "v.onnx"


def test_an_alltalk_config_file_is_read_and_unknown_keys_are_ignored(tmp_path):
    (tmp_path / "confignew.json").write_text(json.dumps({
        "branding": "AllTalk ", "output_folder": "out", "api_def": {"api_language": "fr", "api_unknown": 1},
        "rvc_settings": {"rvc_enabled": True}}))
    store = SettingsStore(ServerPaths.at(tmp_path))
    assert store.config.api_def.api_language == "fr"
    assert store.config.rvc_settings.rvc_enabled is True
    assert store.paths.outputs(store.config.output_folder) == tmp_path.resolve() / "out"


def test_model_settings_file_overrides_the_engine_defaults(tmp_path):
    path = ServerPaths.at(tmp_path).model_settings_file("piper")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"settings": {"def_character_voice": "x.onnx", "repetitionpenalty_set": "10,5"},
                                "model_capabilties": {"streaming_capable": True}}))
    settings = SettingsStore(ServerPaths.at(tmp_path)).model_settings(INFO).settings
    assert settings.def_character_voice == "x.onnx"
    assert settings.def_narrator_voice == "v.onnx"
    assert settings.repetitionpenalty_set == 10.5


def test_a_malformed_file_on_reload_keeps_the_loaded_settings(tmp_path):
    config = tmp_path / "confignew.json"
    config.write_text(json.dumps({"api_def": {"api_language": "de"}}))
    store = SettingsStore(ServerPaths.at(tmp_path))
    config.write_text("{not json")
    with pytest.raises(ConfigFileError, match="confignew.json is not valid JSON"):
        store.reload()
    assert store.config.api_def.api_language == "de"


def test_a_filter_that_is_not_a_regex_is_refused_at_load(tmp_path):
    (tmp_path / "confignew.json").write_text(json.dumps({"api_def": {"api_allowed_filter": "[unclosed"}}))
    with pytest.raises(ConfigFileError, match="api_allowed_filter"):
        SettingsStore(ServerPaths.at(tmp_path))
