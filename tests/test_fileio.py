import os
import stat

import pytest

from echoaudit.fileio import atomic_dir, atomic_path, write_json


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_modes_are_those_of_a_plain_write(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("1")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_dir_keeps_old_folder_on_failure(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(d) as tmp:
            (tmp / "new").write_text("2")
            raise ValueError("x")
    assert [p.name for p in d.iterdir()] == ["keep"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_model_fingerprint_ignores_notes_beside_the_weights(tmp_path):
    from echoaudit.fileio import model_fingerprint

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "w.safetensors").write_bytes(b"123")
    before = model_fingerprint(tmp_path)
    (tmp_path / "metrics.json").write_text('{"psnr": 33}')
    assert model_fingerprint(tmp_path) == before
    (tmp_path / "w.safetensors").write_bytes(b"124")
    assert model_fingerprint(tmp_path) != before
