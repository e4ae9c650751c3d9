"""Defaults merging and the all-at-once validation of `/api/tts-generate` (§4.1, §4.10)."""

from speechcore.api.generate_form import GenerateForm, merge_defaults, validate_generate
from speechcore.config.alltalk import ApiDefaults, RvcSettings
from speechcore.config.engine_settings import EngineDefaults

ENGINE = EngineDefaults(def_character_voice="a.onnx", def_narrator_voice="b.onnx", generationspeed_set=1.0)


def merged(**fields):
    return merge_defaults(GenerateForm(text_input="Hello", **fields), ApiDefaults(), RvcSettings(), ENGINE)


def test_absent_fields_take_config_and_engine_defaults():
    params = merged()
    assert params.text_filtering == "standard"
    assert params.character_voice_gen == "a.onnx"
    assert params.narrator_voice_gen == "b.onnx"
    assert params.rvccharacter_voice_gen == "Disabled"
    assert params.narrator_enabled == "false"
    assert params.language == "en"
    assert params.output_file_name == "myoutputfile"
    assert params.output_file_timestamp is True
    assert params.autoplay_volume == 0.5
    assert params.repetition_penalty == 10.0
    assert validate_generate(params, 2000) == []


def test_every_failing_field_is_reported_once_in_contract_order():
    params = merged(language="xx", speed=5, narrator_enabled="maybe", output_file_name="bad-name",
                    temperature=0, autoplay_volume=1.5, text_filtering="markdown", pitch=11,
                    repetition_penalty=0.5, text_not_inside="nobody")
    lines = validate_generate(params, 2000)
    assert [line.split(":")[0] for line in lines] == [
        "text_filtering", "narrator_enabled", "text_not_inside", "language", "output_file_name",
        "autoplay_volume", "speed", "pitch", "temperature", "repetition_penalty"]
    assert "0.25 and 2.0" in lines[6]
    assert "'zh-cn'" in lines[3]


def test_text_length_is_checked_against_the_configured_maximum():
    params = merge_defaults(GenerateForm(text_input="x" * 11), ApiDefaults(), RvcSettings(), ENGINE)
    assert validate_generate(params, 10)[0].startswith("text_input: must be at most 10 characters")


def test_narrator_enabled_is_case_sensitive():
    assert validate_generate(merged(narrator_enabled="True"), 2000)[0].startswith("narrator_enabled")


def test_voice_names_that_leave_their_folder_fail_validation():
    for voice in ("../x.onnx", "/etc/passwd", "a/../../b", "C:\\x.onnx", "..\\x"):
        lines = validate_generate(merged(character_voice_gen=voice, narrator_voice_gen=voice), 2000)
        assert [line.split(":")[0] for line in lines] == ["character_voice_gen", "narrator_voice_gen"], voice


def test_forbidden_voice_characters_fail_validation():
    assert validate_generate(merged(character_voice_gen="a|b"), 2000)[0].startswith("character_voice_gen")


def test_sillytavern_narrator_placeholder_passes_the_voice_rule():
    assert validate_generate(merged(narrator_voice_gen="Please set a voice"), 2000) == []


def test_rvc_names_that_leave_their_folder_fail_validation():
    lines = validate_generate(merged(rvccharacter_voice_gen="../../x.pth"), 2000)
    assert lines[0].startswith("rvccharacter_voice_gen")
    assert validate_generate(merged(rvccharacter_voice_gen="disable"), 2000) == []


def test_unknown_fields_of_json_bodies_are_ignored_and_logged(caplog):
    from speechcore.api.openai_wire import SpeechRequest

    with caplog.at_level("INFO", logger="speechcore.wire"):
        request = SpeechRequest.model_validate({"model": "tts-1", "input": "Hi.", "voice": "alloy",
                                                "instructions": "cheerful", "sped": 2.0})
    assert request.speed == 1.0
    assert "SpeechRequest: ignored unknown field(s) instructions, sped" in caplog.text
