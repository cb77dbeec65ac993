import os
import stat

import pytest

from echoaudit.errors import CheckpointError, ConfigError
from echoaudit.fileio import atomic_dir, atomic_path, read_json, read_safetensors_header, write_json


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


# --------------------------------------------------------------------------- strict readers


@pytest.mark.parametrize("content, match", [
    (b"{not json", r"is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
    (b'{"a": NaN}', r"NaN is not valid JSON \(only finite numbers are allowed\)"),
    (b'{"a": -Infinity}', r"-Infinity is not valid JSON"),
    (b'{"a": 1e400}', r"number 1e400 is too large \(it overflows to infinity\)"),
    (b'{"a": 123456789012345678901234567890}', r"integer 123456789012345678901234567890 \(30 digits\) is outside"),
    (b'{"a": ' + b"9" * 5000 + b"}", r"(Exceeds the limit \(4300 digits\)|outside the 64-bit range)"),
    (b"[" * 100_000, r"is nested too deeply to be a workspace manifest"),
    (b'{"a": "\xff"}', r"is not UTF-8 text \(byte 7 is b'\\xff'\)"),
    (b'{"a": "\\ud800"}', r"holds a string with an unpaired UTF-16 surrogate"),
    (b"[1, 2]", r"must hold an object at the top level; it holds an array"),
    (b"", r"is not valid JSON: Expecting value at line 1, column 1"),
])
def test_read_json_names_the_file_and_the_problem(tmp_path, content, match):
    path = tmp_path / "manifest.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"workspace manifest '.*manifest\.json'.*" + match):
        read_json(path, what="workspace manifest")


def test_read_json_accepts_what_write_json_writes(tmp_path):
    obj = {"a": [1, 2.5, None, True], "b": {"c": "é"}, "big": 2**62}
    write_json(tmp_path / "x.json", obj)
    assert read_json(tmp_path / "x.json") == obj
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf[1]")
    assert read_json(tmp_path / "bom.json", expect=list) == [1]
    with pytest.raises(ConfigError, match=r"config '.*nope\.json' does not exist"):
        read_json(tmp_path / "nope.json", what="config")
    with pytest.raises(ConfigError, match=r"is not a file"):
        read_json(tmp_path, what="config")
    (tmp_path / "big.json").write_text("[" + "0," * 1000 + "0]")
    with pytest.raises(ConfigError, match=r"is 2003 bytes; the limit for this file is 1000 bytes"):
        read_json(tmp_path / "big.json", max_bytes=1000, expect=list)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        read_json(tmp_path / "bad.json", error=CheckpointError)


def test_read_safetensors_header(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": np.zeros((2, 3), np.float32), "b": np.arange(4, dtype=np.int64)}, str(path))
    header = read_safetensors_header(path)
    assert header["a"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [32, 56]} and set(header) == {"a", "b"}
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    with pytest.raises(CheckpointError, match=r"weights file '.*w\.safetensors' is truncated or corrupt: tensor 'a' "
                                              r"lies at bytes 32\.\.56 of a 48-byte data section"):
        read_safetensors_header(path)
    path.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match=r"is truncated \(5 bytes"):
        read_safetensors_header(path)
    path.write_bytes((2**60).to_bytes(8, "little") + data[8:])
    with pytest.raises(CheckpointError, match=r"its header claims 1152921504606846976 bytes"):
        read_safetensors_header(path)
    n = int.from_bytes(data[:8], "little")
    path.write_bytes(data[:8] + data[8 : 8 + n].replace(b"[2,3]", b"[2,4]") + data[8 + n :])
    with pytest.raises(CheckpointError, match=r"tensor 'a' of shape \[2, 4\] \(F32\) does not fill its 24 bytes"):
        read_safetensors_header(path)
    path.write_bytes(data[:8] + b"{" * n + data[8 + n :])
    with pytest.raises(CheckpointError, match=r"its header is not valid JSON"):
        read_safetensors_header(path)
