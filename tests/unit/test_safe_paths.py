import os

import pytest

from speechcore.safe_paths import UnsafeName, resolve_inside


def test_names_inside_the_folder_resolve(tmp_path):
    assert resolve_inside(tmp_path, "a/b.onnx") == tmp_path.resolve() / "a" / "b.onnx"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "  ",
        "../x",
        "a/../../x",
        "/etc/passwd",
        "\\\\server\\x",
        "C:\\x",
        "a\x00b",
        "..\\x",
        "x" * 256,
        "voices/" + "é" * 128,
    ],
)
def test_unsafe_names_are_refused(tmp_path, name):
    with pytest.raises(UnsafeName):
        resolve_inside(tmp_path, name)


def test_a_symlink_that_leads_out_is_refused(tmp_path):
    inside = tmp_path / "folder"
    inside.mkdir()
    (tmp_path / "secret.onnx").write_text("x")
    os.symlink(tmp_path / "secret.onnx", inside / "link.onnx")
    with pytest.raises(UnsafeName):
        resolve_inside(inside, "link.onnx")
