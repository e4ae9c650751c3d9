"""VitsEngine and XttsEngine on tiny random-initialised models (no Ray)."""

import asyncio
import json
import os
import shutil

import pytest

pytest.importorskip("TTS", reason="the coqui extra is not installed")

import torch  # noqa: E402

from deployments.voice_cache import LoadedVoice, fresh_voice  # noqa: E402
from engines.base import EngineOptions  # noqa: E402
from engines.coqui_common import ModelFolders  # noqa: E402
from engines.vits import VitsEngine  # noqa: E402
from engines.xtts import REQUIRED_FILES, XttsEngine  # noqa: E402
from speechcore.config.paths import ServerPaths  # noqa: E402
from speechcore.engine_types import EngineError, SynthesisRequest, UnknownModel, UnknownVoice, UnsupportedLanguage  # noqa: E402
from tests.coqui_models import build_tiny_vits  # noqa: E402

THREE_SENTENCES = "The sun was setting. Birds flew home. Night came slowly."


@pytest.fixture(scope="module")
def vits(coqui_root):
    return VitsEngine.create(ServerPaths.at(coqui_root), EngineOptions(threads=2))


@pytest.fixture(scope="module")
def xtts(coqui_root):
    paths = ServerPaths.at(coqui_root)
    return XttsEngine(ModelFolders(paths.engine_models("xtts"), "xtts", REQUIRED_FILES), paths.voices,
                      EngineOptions(threads=2, max_batch=4), stream_chunk_tokens=8)


def test_vits_lists_models_and_speakers(vits):
    info = vits.info()
    assert info.models == ["vits - tiny-single", "vits - tiny-vctk", "vits - tiny-vctk-22k"]
    vits.select_model("vits - tiny-vctk")
    info = vits.info()
    assert (info.current_model, info.voices, info.default_voice) == (
        "vits - tiny-vctk",
        ["p225", "p226", "p227"],
        "p225",
    )
    assert info.capabilities.streaming and info.capabilities.lowvram and not info.capabilities.cuda


def test_every_vits_speaker_speaks_one_chunk_per_sentence(vits):
    vits.select_model("vits - tiny-vctk")
    for speaker in vits.info().voices:
        chunks = list(vits.synthesize(vits.load_voice(speaker), SynthesisRequest(text=THREE_SENTENCES, voice=speaker)))
        assert len(chunks) == 3
        assert {c.sample_rate for c in chunks} == {16000}
        assert all(c.frames > 0 for c in chunks)


def test_a_single_speaker_vits_model_has_the_default_voice(vits):
    vits.select_model("vits - tiny-single")
    assert vits.info().voices == ["default"]
    chunks = list(vits.synthesize(vits.load_voice("default"), SynthesisRequest(text="Hello.", voice="default")))
    assert chunks[0].sample_rate == 22050
    with pytest.raises(UnknownVoice):
        vits.load_voice("p225")
    vits.select_model("vits - tiny-vctk")


def test_check_model_loads_without_switching(vits):
    vits.select_model("vits - tiny-vctk")
    vits.check_model("vits - tiny-vctk-22k")
    assert vits.info().current_model == "vits - tiny-vctk"
    with pytest.raises(UnknownModel):
        vits.check_model("vits - missing")


def test_vits_unknown_speaker_and_model_are_clear_errors(vits):
    with pytest.raises(UnknownVoice, match="p999"):
        vits.load_voice("p999")
    with pytest.raises(UnknownModel, match="vits - nope"):
        vits.select_model("vits - nope")
    with pytest.raises(UnknownModel):
        vits.select_model("vits - ../../etc")


def test_a_broken_vits_model_fails_to_load_and_the_old_one_keeps_serving(vits, coqui_root):
    broken = coqui_root / "models" / "vits" / "tiny-broken"
    shutil.copytree(coqui_root / "models" / "vits" / "tiny-vctk", broken)
    (broken / "model_file.pth").write_bytes(b"not a checkpoint")
    try:
        vits.select_model("vits - tiny-vctk")
        with pytest.raises(EngineError, match="could not load vits - tiny-broken"):
            vits.select_model("vits - tiny-broken")
        assert vits.info().current_model == "vits - tiny-vctk"
    finally:
        shutil.rmtree(broken)


def test_xtts_lists_wavs_voice_sets_and_latents_in_order(xtts):
    assert xtts.info().voices == ["female_01.wav", "male_01.wav", "voiceset:narrators", "latent:saved.json"]
    info = xtts.info()
    assert info.models == ["xtts - tiny-xtts"] and info.current_model == "xtts - tiny-xtts"
    caps = info.capabilities
    assert caps.streaming and caps.languages and caps.temperature and caps.repetitionpenalty and caps.deepspeed
    assert not caps.deepspeed_available, "DeepSpeed needs CUDA"


def test_xtts_streams_several_chunks_at_24k(xtts):
    voice = xtts.load_voice("female_01.wav")
    chunks = list(xtts.synthesize(voice, SynthesisRequest(text=THREE_SENTENCES, voice="female_01.wav", language="en")))
    assert len(chunks) >= 3
    assert {c.sample_rate for c in chunks} == {24000}
    assert sum(c.duration_s for c in chunks) > 0.5


@pytest.mark.parametrize("voice", ["male_01.wav", "voiceset:narrators", "latent:saved.json"])
def test_every_kind_of_xtts_voice_speaks(xtts, voice):
    chunks = list(
        xtts.synthesize(xtts.load_voice(voice), SynthesisRequest(text="Hello there.", voice=voice, language="fr"))
    )
    assert chunks and chunks[0].sample_rate == 24000


def test_xtts_latents_are_computed_once_per_voice(xtts):
    before = xtts.latents_computed
    first = xtts.load_voice("male_01.wav")
    again = xtts.load_voice("male_01.wav")
    assert again is first
    assert xtts.latents_computed - before <= 1


def test_a_replaced_xtts_clip_gets_new_latents_and_a_removed_one_is_unknown(xtts, coqui_root):
    """What an engine replica does on each use of a voice it keeps (deployments/voice_cache.py)."""
    voices = coqui_root / "voices"
    shutil.copyfile(voices / "female_01.wav", voices / "swapped.wav")
    try:
        held = LoadedVoice(xtts.load_voice("swapped.wav"), xtts.voice_version("swapped.wav"))
        assert asyncio.run(fresh_voice(held, "swapped.wav", xtts.voice_version, xtts.load_voice)) is held.voice
        first = held.voice
        shutil.copyfile(voices / "male_01.wav", voices / "upload.tmp")
        os.replace(voices / "upload.tmp", voices / "swapped.wav")  # as an upload with replace=true does
        computed = xtts.latents_computed
        fresh = asyncio.run(fresh_voice(held, "swapped.wav", xtts.voice_version, xtts.load_voice))
        assert fresh is not first and xtts.latents_computed == computed + 1
        assert not torch.equal(fresh.speaker_embedding, first.speaker_embedding)
    finally:
        (voices / "swapped.wav").unlink()
    with pytest.raises(UnknownVoice):
        xtts.voice_version("swapped.wav")


def test_xtts_bad_voices_languages_and_models(xtts):
    for voice in ("missing.wav", "../secret.wav", "voiceset:../..", "latent:../../x.json", "/etc/passwd"):
        with pytest.raises(UnknownVoice):
            xtts.load_voice(voice)
    voice = xtts.load_voice("female_01.wav")
    with pytest.raises(UnsupportedLanguage, match="xx"):
        list(xtts.synthesize(voice, SynthesisRequest(text="Hi.", voice="female_01.wav", language="xx")))
    with pytest.raises(UnknownModel):
        xtts.select_model("xtts - missing")


def test_a_model_folder_with_missing_files_is_not_listed(xtts, coqui_root):
    partial = coqui_root / "models" / "xtts" / "partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({}))
    try:
        assert xtts.info().models == ["xtts - tiny-xtts"]
    finally:
        shutil.rmtree(partial)


def test_no_models_means_a_clear_error(tmp_path):
    engine = VitsEngine.create(ServerPaths.at(tmp_path), EngineOptions())
    assert engine.info().models == [] and engine.info().current_model is None
    with pytest.raises(EngineError, match="no VITS models"):
        engine.select_model(None)


def test_the_single_speaker_builder_writes_no_speakers_file(tmp_path):
    folder = build_tiny_vits(tmp_path / "one", speakers=None)
    assert not (folder / "speaker_ids.json").exists()
