"""The Ray-free RVC pipeline on tiny random voices and embedders in the real file formats."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyworld", reason="the rvc extra is not installed")

import torch  # noqa: E402

from rvc.checkpoint import MissingWeights, UnsafeCheckpoint, read_voice_checkpoint  # noqa: E402
from rvc.embedder import load_embedder  # noqa: E402
from rvc.pipeline import VoiceConverter, resample_audio  # noqa: E402
from rvc.pitch import coarse_pitch, combine_contours  # noqa: E402
from rvc.synthesizer import Synthesizer  # noqa: E402
from speechcore.rvc_requests import ConversionRequest, RvcModelMissing, VoiceConversionError  # noqa: E402
from tests.rvc_models import (  # noqa: E402
    EMBEDDER_WIDTH,
    PROJECTED_WIDTH,
    build_index,
    build_tiny_embedder,
    build_tiny_rmvpe,
    build_tiny_voice,
)

RATE = 22050  # the bundled Piper voice


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Real speech (the bundled Piper voice, a male speaker around 130 Hz), float at RATE."""
    from engines.base import EngineOptions
    from engines.piper import BUNDLED_VOICE, PiperEngine
    from speechcore.engine_types import SynthesisRequest

    engine = PiperEngine(Path("/nonexistent"), EngineOptions(threads=1))
    request = SynthesisRequest(text="The quick brown fox jumps over the lazy dog near the river.", voice=BUNDLED_VOICE)
    chunks = list(engine.synthesize(engine.load_voice(BUNDLED_VOICE), request))
    assert chunks[0].sample_rate == RATE
    return np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2").astype(np.float32) / 32768


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rvc")
    voices, base = root / "rvc_voices", root / "rvc_base"
    for version in ("v1", "v2"):
        for f0 in (True, False):
            build_tiny_voice(voices / f"{version}-{'f0' if f0 else 'nof0'}" / "voice.pth", version, f0)
            indexed = voices / f"{version}-{'f0' if f0 else 'nof0'}-index"
            build_tiny_voice(indexed / "voice.pth", version, f0)
            build_index(indexed / "added.index", EMBEDDER_WIDTH if version == "v2" else PROJECTED_WIDTH)
    build_tiny_embedder(base, "hubert_base", "transformers")
    build_tiny_embedder(base, "contentvec_base", "fairseq")
    return voices, base


@pytest.fixture(scope="module")
def converter(folders) -> VoiceConverter:
    return VoiceConverter(*folders)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("f0", [True, False])
@pytest.mark.parametrize("index", [True, False])
def test_voices_convert_to_their_rate_keeping_the_duration(converter, speech, version, f0, index):
    name = f"{version}-{'f0' if f0 else 'nof0'}{'-index' if index else ''}/voice.pth"
    voice = converter.load_voice(name)
    assert (voice.index is not None) == index and voice.pitch_guided == f0 and voice.version == version
    audio = speech
    out = converter.convert(voice, audio, RATE, ConversionRequest(model=name, f0_method="pm", index_rate=0.75,
                                                                 protect=0.33, rms_mix_rate=0.5))
    assert voice.sample_rate == 40000
    assert abs(len(out) / voice.sample_rate - len(audio) / RATE) < 0.05 * len(audio) / RATE
    assert np.isfinite(out).all() and 0 < np.abs(out).max() <= 1.0


@pytest.mark.parametrize("method", ["pm", "harvest", "dio", "crepe-tiny", "crepe", "fcpe", "hybrid[crepe-tiny+fcpe]"])
def test_every_f0_method_that_needs_no_download_runs(converter, speech, method):
    voice = converter.load_voice("v2-f0/voice.pth")
    audio_16k = resample_audio(speech, RATE, 16000)
    frames = len(audio_16k) // 160
    contour = converter.pitch.f0(method, audio_16k, frames, 160, 3)
    voiced = contour[contour > 0]
    # Piper's speech differs from run to run (its noise is not seeded); harvest voices 19-33% of its frames, pm and
    # dio about half: a tracker that fails voices next to none.
    assert len(contour) == frames and len(voiced) > 0.1 * frames
    assert 80 < np.median(voiced) < 200  # the speaker's pitch
    out = converter.convert(voice, speech, RATE, ConversionRequest(model="v2-f0/voice.pth", f0_method=method))
    assert abs(len(out) / 40000 - len(speech) / RATE) < 0.05 * len(speech) / RATE


@pytest.mark.parametrize("method", ["rmvpe", "hybrid[rmvpe+fcpe]"])
def test_rmvpe_runs_with_its_weights(folders, speech, tmp_path, method):
    voices, base = folders
    shadow = tmp_path / "base"  # the same embedders, plus rmvpe.pt
    shadow.mkdir()
    for item in base.iterdir():
        (shadow / item.name).symlink_to(item)
    build_tiny_rmvpe(shadow / "rmvpe.pt")
    converter = VoiceConverter(voices, shadow)
    audio_16k = resample_audio(speech, RATE, 16000)
    frames = len(audio_16k) // 160
    contour = converter.pitch.f0(method, audio_16k, frames, 160, 3)
    assert len(contour) == frames and np.isfinite(contour).all()
    assert ((contour == 0) | ((contour > 30) & (contour < 2100))).all()  # the model's 360 classes span 32-2000 Hz
    voice = converter.load_voice("v2-f0/voice.pth")
    out = converter.convert(voice, speech, RATE, ConversionRequest(model="v2-f0/voice.pth", f0_method=method))
    assert abs(len(out) / 40000 - len(speech) / RATE) < 0.05 * len(speech) / RATE


def test_rmvpe_without_its_weights_is_a_clear_error(converter, speech):
    voice = converter.load_voice("v2-f0/voice.pth")
    with pytest.raises(MissingWeights, match="rmvpe.pt"):
        converter.convert(voice, speech, RATE, ConversionRequest(model="v2-f0/voice.pth", f0_method="rmvpe"))


def test_hybrid_voices_a_frame_when_half_its_members_do():
    contours = np.array([[0, 100, 0, 200], [0, 110, 50, 0], [0, 0, 0, 210.0]])
    assert list(combine_contours(contours)) == [0, 105, 0, 205]


def test_coarse_pitch_bins_span_the_tracked_range():
    bins = coarse_pitch(np.array([0.0, 50.0, 100.0, 200.0, 400.0, 1100.0, 3000.0]))
    assert bins[0] == 1 and bins[1] == 1 and bins[5] == 255 and bins[6] == 255
    assert list(bins[1:6]) == sorted(bins[1:6]) and len(set(bins[1:6])) == 5


def test_fairseq_and_transformers_layouts_give_the_same_features(folders, speech, tmp_path):
    _voices, base = folders
    same = tmp_path / "base"
    build_tiny_embedder(same, "hubert_base", "fairseq")  # the same seed as the transformers folder
    folder, fairseq = load_embedder(base, "hubert"), load_embedder(same, "hubert")
    audio = resample_audio(speech, RATE, 16000)
    for width in (EMBEDDER_WIDTH, PROJECTED_WIDTH):
        a = folder.features(audio, width, torch.device("cpu"))
        b = fairseq.features(audio, width, torch.device("cpu"))
        assert a.shape == b.shape and a.shape[-1] == width
        assert torch.allclose(a, b, atol=1e-5)


def test_missing_embedder_names_the_files(tmp_path):
    with pytest.raises(MissingWeights, match="hubert_base.pt"):
        load_embedder(tmp_path, "hubert")


def test_parametrized_weight_norm_names_load_too(folders, tmp_path):
    voices, _base = folders
    data = torch.load(voices / "v2-f0" / "voice.pth", weights_only=True)
    renamed = {k.replace(".weight_g", ".parametrizations.weight.original0")
               .replace(".weight_v", ".parametrizations.weight.original1"): v for k, v in data["weight"].items()}
    torch.save({**data, "weight": renamed}, tmp_path / "new.pth")
    original = Synthesizer.from_checkpoint(read_voice_checkpoint(voices / "v2-f0" / "voice.pth"))
    new = Synthesizer.from_checkpoint(read_voice_checkpoint(tmp_path / "new.pth"))
    for key, value in original.state_dict().items():
        assert torch.allclose(value, new.state_dict()[key])


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pth_carrying_code_is_refused_and_never_runs(folders, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    data = torch.load(folders[0] / "v2-f0" / "voice.pth", weights_only=True)
    torch.save({**data, "info": _RunsCode(marker)}, path)
    with pytest.raises(UnsafeCheckpoint, match="pickled objects"):
        read_voice_checkpoint(path)
    assert not marker.exists()
    # The same file through plain pickle would run it: the test payload is real.
    assert isinstance(pickle.dumps(_RunsCode(marker)), bytes)


def test_model_names_stay_inside_the_voices_folder(converter):
    with pytest.raises(VoiceConversionError, match="\\.\\."):
        converter.load_voice("../rvc_base/hubert_base.pth")
    with pytest.raises(RvcModelMissing):
        converter.load_voice("nobody.pth")


@pytest.mark.parametrize("junk", [b"not a checkpoint at all",
                                  b"\x80\x02e.",  # a pickle that pops a mark it never set (IndexError inside torch)
                                  b"\x80\x02}q\x00X"])  # cut inside a string's length (struct.error)
def test_a_file_that_is_not_a_voice_model_is_a_clear_error(tmp_path, folders, junk):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "junk.pth").write_bytes(junk)
    with pytest.raises(VoiceConversionError, match="not a readable torch checkpoint"):
        VoiceConverter(tmp_path, folders[1]).load_voice("junk/junk.pth")
