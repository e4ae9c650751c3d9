"""The voice library's parts without a server: clip preparation, names, publishing and records."""

from __future__ import annotations

import os
import time

import numpy as np
import pyloudnorm
import pytest

from speechcore.config.app_args import ClipArgs
from speechcore.config.paths import ServerPaths
from speechcore.voices.clips import normalise_loudness, trim_silence
from speechcore.voices.errors import NoSuchVoice, VoiceExists, VoiceQuotaReached, VoiceRefused
from speechcore.voices.layout import name_problem
from speechcore.voices.library import VoiceLibrary, library_version

RATE = 22050


def tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * 200 * t)


def test_silence_is_trimmed_from_both_ends_only():
    quiet = np.zeros(RATE)
    sound = np.concatenate([quiet, tone(2.0), quiet, tone(1.0), quiet])
    trimmed = trim_silence(sound, RATE, -40.0)
    # the pause between the two sounds stays; 0.1 s of edge is kept on each side
    assert len(trimmed) / RATE == pytest.approx(4.0 + 0.2, abs=0.03)
    assert len(trim_silence(np.zeros(3 * RATE), RATE, -40.0)) == 0


def test_loudness_is_brought_to_the_target_and_peaks_stay_under_the_limit():
    rules = ClipArgs()
    for amplitude in (0.01, 0.9):
        out = normalise_loudness(tone(4.0, amplitude), RATE, rules)
        assert pyloudnorm.Meter(RATE).integrated_loudness(out) == pytest.approx(-20.0, abs=0.5)
    spiky = tone(4.0, 0.01)
    spiky[RATE] = 0.9  # one click far above the rest: the gain is lowered to keep it under the peak
    out = normalise_loudness(spiky, RATE, rules)
    assert np.abs(out).max() == pytest.approx(rules.peak)
    with pytest.raises(VoiceRefused):
        normalise_loudness(np.zeros(4 * RATE), RATE, rules)


@pytest.mark.parametrize("name, ok", [("amy", True), ("en_US-amy.v2", True), ("_x", True), ("x" * 100, True),
                                      ("x" * 101, False), ("-x", False), (".x", False), ("x.", False),
                                      ("a/b", False), ("..", False), ("a b", False), ("é", False), ("", False)])
def test_names(name, ok):
    assert (name_problem(name) is None) == ok


@pytest.fixture
def library(tmp_path) -> VoiceLibrary:
    return VoiceLibrary(ServerPaths.at(tmp_path), max_voices_per_client=2)


def _staged(stage, content: bytes):
    path = stage / "clip.wav"
    path.write_bytes(content)
    return path


def test_publishing_never_overwrites_unless_asked(library):
    target = library.paths.voices / "amy.wav"
    with library.staging() as stage:
        library.publish(_staged(stage, b"one"), target, replace=False)
    with library.staging() as stage, pytest.raises(VoiceExists):
        library.publish(_staged(stage, b"two"), target, replace=False)
    assert target.read_bytes() == b"one"
    with library.staging() as stage:
        library.publish(_staged(stage, b"three"), target, replace=True)
    assert target.read_bytes() == b"three"
    assert not any((library.home / "incoming").iterdir())


def test_a_folder_is_swapped_whole_when_replaced(library):
    target = library.paths.engine_models("piper") / "amy"
    for content in (b"old", b"new"):
        with library.staging() as stage:
            (stage / "amy").mkdir()
            (stage / "amy" / "amy.onnx").write_bytes(content)
            library.publish(stage / "amy", target, replace=content == b"new")
    assert [p.read_bytes() for p in target.iterdir()] == [b"new"]
    assert not any((library.home / "incoming").iterdir())  # the old folder is gone too


def test_the_quota_counts_a_clients_stored_voices_and_a_removal_frees_one(library):
    for name in ("a", "b"):
        library.check_quota("xtts", name, "key:one")
        (library.paths.voices).mkdir(exist_ok=True)
        (library.paths.voices / f"{name}.wav").write_bytes(b"x")
        library.stored("xtts", name, "key:one")
    with pytest.raises(VoiceQuotaReached):
        library.check_quota("xtts", "c", "key:one")
    library.check_quota("xtts", "a", "key:one")  # replacing one of its own is fine
    library.check_quota("xtts", "c", "key:two")  # another client has its own quota
    version = library_version(library.paths)
    library.remove("xtts", "a")
    assert library_version(library.paths) != version  # replicas see the change
    library.check_quota("xtts", "c", "key:one")
    with pytest.raises(NoSuchVoice):
        library.remove("xtts", "a")
    assert "key:one" not in (library.home / "owners" / "xtts" / "b.json").read_text()  # a hash, not the key


def test_leftovers_of_interrupted_uploads_are_swept(library):
    old = library.home / "incoming" / "old"
    old.mkdir(parents=True)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    (library.home / "incoming" / "recent").mkdir()
    assert library.sweep_incoming(3600, time.time()) == 1
    assert [p.name for p in (library.home / "incoming").iterdir()] == ["recent"]
