"""Output names (§4.2) and atomic, collision-free publishing."""

import re

import pytest

from speechcore.storage import TEMP_PREFIX, OutputStore, output_name


def test_timestamped_name_has_seconds_then_five_hex():
    assert re.fullmatch(
        r"myoutputfile_1795479968[0-9a-f]{5}\.wav", output_name("myoutputfile", "wav", True, now=1795479968.7)
    )


def test_untimestamped_name_still_has_a_random_part():
    assert re.fullmatch(r"st_output_[0-9a-f]{5}\.wav", output_name("st_output", "wav", False))


def test_write_new_publishes_a_whole_file_and_never_overwrites(tmp_path):
    store = OutputStore(tmp_path / "outputs")
    paths = {store.write_new("same", "wav", False, lambda f: f.write(b"abc")) for _ in range(20)}
    assert len(paths) == 20
    assert all(p.read_bytes() == b"abc" for p in paths)
    assert not list((tmp_path / "outputs").glob(TEMP_PREFIX + "*"))


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    store = OutputStore(tmp_path)

    def fail(out):
        out.write(b"half")
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError):
        store.write_new("x", "wav", True, fail)
    assert list(tmp_path.iterdir()) == []


def test_find_serves_only_published_files_inside_the_folder(tmp_path):
    store = OutputStore(tmp_path / "out")
    path = store.write_new("x", "wav", True, lambda f: f.write(b"1"))
    (tmp_path / "secret.txt").write_text("s")
    (tmp_path / "out" / (TEMP_PREFIX + "abc")).write_text("partial")
    assert store.find(path.name) == path
    for name in ("../secret.txt", "..", "", TEMP_PREFIX + "abc", "missing.wav", "a/b"):
        assert store.find(name) is None, name
