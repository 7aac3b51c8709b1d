"""kseg.atomic: a write replaces the file whole or not at all, and the file gets the mode any new
file would get (not mkstemp's private 0600, which hid artifacts from a shared server's users)."""

from __future__ import annotations

import os
import stat

import pytest

from kseg import atomic


def test_written_file_has_the_umask_mode(tmp_path):
    path = atomic.write_text(tmp_path / "card.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~atomic._UMASK
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = atomic.write_text(tmp_path / "model.json", "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed half-way")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.json"]


def test_atomic_dir_renames_a_complete_folder_with_the_umask_mode(tmp_path):
    (tmp_path / "out").mkdir()  # an empty folder is replaced
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.")
        (tmp / "images").mkdir()
        (tmp / "manifest.csv").write_text("image\n")
    assert sorted(os.listdir(tmp_path / "out")) == ["images", "manifest.csv"]
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~atomic._UMASK
    assert os.listdir(tmp_path) == ["out"]


def test_failed_atomic_dir_leaves_nothing_and_keeps_a_full_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(tmp_path / "new") as tmp:
            (tmp / "half.png").write_bytes(b"x")
            raise RuntimeError("killed half-way")
    assert os.listdir(tmp_path) == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("old")
    with pytest.raises(OSError):
        with atomic.atomic_dir(tmp_path / "full") as tmp:
            (tmp / "new.txt").write_text("new")
    assert os.listdir(tmp_path / "full") == ["keep.txt"]
    assert os.listdir(tmp_path) == ["full"]
