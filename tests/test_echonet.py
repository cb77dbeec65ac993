"""EchoNet-format reader and writer: round trip, pediatric layout, validation, atomicity."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import echoaudit.data.video as video_io
from echoaudit.data.echonet import (
    FILELIST_COLUMNS,
    FOLD_SPLITS,
    EchoNetDataset,
    EchoNetWriter,
    write_filelist,
)
from echoaudit.data.video import write_video
from echoaudit.errors import DatasetError, VideoError

T, H, W = 4, 16, 16


def _frames(k: int) -> np.ndarray:
    """Smooth frames (mjpeg keeps them close), different for each k. (T, H, W) float32."""
    y, x = np.mgrid[0:H, 0:W] / (H - 1)
    t = np.arange(T)[:, None, None] / T
    return (0.2 + 0.6 * (0.5 + 0.5 * np.sin(2 * np.pi * (x + 0.3 * y + t + 0.1 * k)))).astype(np.float32)


# 6 videos, 3 patients, each patient in one split.
ROWS = [
    # name, patient, split, ef, esv, edv, fps
    ("v0", "P0", "TRAIN", 55.5, 40.0, 90.0, 50),
    ("v1", "P0", "train", 60.25, math.nan, math.nan, 50),
    ("v2", "P1", "VAL", 35.0, 70.0, 110.0, 30),
    ("v3", "P1", "val", 12.5, math.nan, 100.0, 30),
    ("v4", "P2", "TEST", 70.0, 20.0, 66.0, 25.5),
    ("v5", "P2", "Test", 100.0, 0.0, 50.0, 25.5),
]


@pytest.fixture
def tiny(tmp_path) -> Path:
    root = tmp_path / "tiny"
    with EchoNetWriter(root) as writer:
        for k, (name, patient, split, ef, esv, edv, fps) in enumerate(ROWS):
            path = writer.add(name, _frames(k), fps, ef=ef, esv=esv, edv=edv, split=split,
                              patient_id=patient, view="A4C" if k < 4 else None, Seed=k)
            assert path == root / "Videos" / f"{name}.avi" and path.is_file()
    return root


def test_writer_reader_round_trip(tiny):
    # The file itself, read with the csv module: EchoNet-Dynamic header order, no ".avi".
    with open(tiny / "FileList.csv", newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0][:9] == FILELIST_COLUMNS and lines[0][9:] == ["PatientID", "View", "Seed"]
    assert [r[0] for r in lines[1:]] == [r[0] for r in ROWS]
    assert lines[2][2] == "" and lines[2][8] == "TRAIN"  # NaN ESV -> empty cell; split upper-cased

    ds = EchoNetDataset.open(tiny)
    t = ds.table
    assert len(ds) == 6 and ds.names == ["v0", "v1", "v2", "v3", "v4", "v5"]
    assert list(t.columns) == FILELIST_COLUMNS + ["PatientID", "View", "Seed", "path"]
    for column in ("EF", "ESV", "EDV", "FPS"):
        assert t[column].dtype == np.float64, column
    for column in ("FrameHeight", "FrameWidth", "NumberOfFrames", "Seed"):
        assert t[column].dtype == np.int64, column
    for column in ("FileName", "Split", "PatientID", "View", "path"):
        assert pd.api.types.is_string_dtype(t[column]), column
    np.testing.assert_array_equal(t["EF"], [r[3] for r in ROWS])
    np.testing.assert_array_equal(t["ESV"], [r[4] for r in ROWS])  # NaN == NaN here
    np.testing.assert_array_equal(t["EDV"], [r[5] for r in ROWS])
    np.testing.assert_array_equal(t["FPS"], [float(r[6]) for r in ROWS])
    assert (t["FrameHeight"] == H).all() and (t["FrameWidth"] == W).all() and (t["NumberOfFrames"] == T).all()
    assert t["Split"].tolist() == ["TRAIN", "TRAIN", "VAL", "VAL", "TEST", "TEST"]
    assert t["PatientID"].tolist() == ["P0", "P0", "P1", "P1", "P2", "P2"]
    assert t["View"].tolist() == ["A4C"] * 4 + ["unknown"] * 2
    assert t["Seed"].tolist() == list(range(6))
    assert t["path"].tolist() == [str((tiny / "Videos" / f"v{k}.avi").absolute()) for k in range(6)]
    assert ds.patients.tolist() == ["P0", "P0", "P1", "P1", "P2", "P2"]
    assert ds.ef.dtype == np.float64 and ds.ef[5] == 100.0
    assert ds.notes == ()


def test_splits_and_rows(tiny):
    ds = EchoNetDataset.open(tiny)
    assert ds.split("VAL").names == ["v2", "v3"]
    assert ds.split("test").root == ds.root
    assert ds.split(["train", "TEST"]).names == ["v0", "v1", "v4", "v5"]
    assert EchoNetDataset.open(tiny, split="val").names == ["v2", "v3"]
    sub = ds.split("TEST")
    assert sub.row(0)["FileName"] == "v4" and sub.row("v5.avi")["EF"] == 100.0 and sub.row(-1).name == 1
    assert ds.row("v3")["EDV"] == 100.0
    with pytest.raises(DatasetError, match=r"split must be one or more of TRAIN, VAL, TEST.*'TRIAN'"):
        ds.split("TRIAN")
    with pytest.raises(DatasetError, match=r"no video named 'v9'"):
        ds.row("v9")
    with pytest.raises(DatasetError, match=r"row 6 is out of range for a data set of 6 videos"):
        ds.row(6)
    with pytest.raises(DatasetError, match=r"no video named 'v0'"):
        sub.row("v0")  # the subset only holds its own rows


def test_load_is_lazy_and_passes_arguments(tiny, monkeypatch):
    calls = []
    real = video_io.load_video

    def counting(source, **kwargs):
        calls.append((source, kwargs))
        return real(source, **kwargs)

    monkeypatch.setattr(video_io, "load_video", counting)
    ds = EchoNetDataset.open(tiny)
    assert calls == []  # opening decodes nothing
    video = ds.load("v3", num_frames=4)
    assert calls == [(ds.table.at[3, "path"], {"num_frames": 4})]
    assert video.frames.shape == (T, H, W) and video.frames.dtype == np.float32
    assert video.fps == pytest.approx(30)
    # mjpeg is lossy: compare with the frames written, loosely; the other videos differ more.
    assert np.abs(video.frames - _frames(3)).mean() < 0.03
    assert np.abs(video.frames - _frames(0)).mean() > 0.1


def test_hand_written_filelist_with_extensions_and_other_case(tmp_path):
    root = tmp_path / "dyn"
    (root / "Videos").mkdir(parents=True)
    for k in range(3):
        write_video(root / "Videos" / f"c{k}.avi", _frames(k), 50)
    write_video(root / "Videos" / "stray.avi", _frames(9), 50)
    (root / "FileList.csv").write_text(
        "\ufefffilename,ef,Frame_Height,frameWidth,fps,number_of_frames,SPLIT,Age\n"
        "c0.avi,50,16,16,50,4,train,3\n"
        "c1,61.5,16,16,50,4,Val,4\n"
        "c2.avi,44,,,50,,TEST,5.5\n"
    )
    ds = EchoNetDataset.open(root)
    t = ds.table
    assert ds.names == ["c0", "c1", "c2"]
    assert t["Split"].tolist() == ["TRAIN", "VAL", "TEST"]
    assert t["FrameHeight"].tolist() == [16, 16, -1] and t["NumberOfFrames"].dtype == np.int64
    assert t["ESV"].isna().all() and t["EDV"].isna().all() and t["ESV"].dtype == np.float64
    assert t["PatientID"].tolist() == ds.names and t["View"].tolist() == ["unknown"] * 3
    assert t["Age"].tolist() == [3.0, 4.0, 5.5] and t["Age"].dtype == np.float64
    assert ds.notes == ("1 video(s) in Videos/ not listed in FileList.csv: stray.avi",)
    # write_filelist round trip: -1 and NaN come back as empty cells, path is dropped.
    write_filelist(tmp_path / "copy", t)
    text = (tmp_path / "copy" / "FileList.csv").read_text().splitlines()
    assert text[0] == ",".join(FILELIST_COLUMNS + ["PatientID", "View", "Age"])
    assert text[3] == "c2,44.0,,,,,50.0,,TEST,c2,unknown,5.5"


def test_pediatric_layout(tmp_path):
    root = tmp_path / "pediatric"
    layout = {"A4C": [("a0", "0"), ("a1", "7"), ("a2", "8"), ("a3", "9")], "PSAX": [("p0", "3"), ("p1", "9.0")]}
    for view, rows in layout.items():
        (root / view / "Videos").mkdir(parents=True)
        lines = ["FileName,EF,Sex,Age,Weight,Height,Split"]
        for k, (name, fold) in enumerate(rows):
            write_video(root / view / "Videos" / f"{name}.avi", _frames(k), 50)
            lines.append(f"{name}.avi,{40 + k},F,{k},10.5,80,{fold}")
        (root / view / "FileList.csv").write_text("\n".join(lines) + "\n")
    ds = EchoNetDataset.open(root)
    t = ds.table
    assert ds.names == ["a0", "a1", "a2", "a3", "p0", "p1"]
    assert t["View"].tolist() == ["A4C"] * 4 + ["PSAX"] * 2
    assert t["Split"].tolist() == [FOLD_SPLITS[f] for f in "0789"] + ["TRAIN", "TEST"]
    assert t["Split"].tolist() == ["TRAIN", "TRAIN", "VAL", "TEST", "TRAIN", "TEST"]
    assert t["ESV"].isna().all() and t["EDV"].isna().all() and t["FPS"].isna().all()
    assert (t["FrameHeight"] == -1).all() and t["FrameHeight"].dtype == np.int64
    assert t["EF"].tolist() == [40.0, 41.0, 42.0, 43.0, 40.0, 41.0]
    assert t["Sex"].tolist() == ["F"] * 6 and t["Age"].dtype == np.int64
    assert t.at[5, "path"] == str((root / "PSAX" / "Videos" / "p1.avi").absolute())
    assert ds.split("TEST").names == ["a3", "p1"]
    assert ds.load("p0").frames.shape == (T, H, W)


def test_broken_dataset_reports_every_problem_at_once(tmp_path):
    root = tmp_path / "broken"
    (root / "Videos").mkdir(parents=True)
    for name in ("a", "b", "c", "e", "f", "zz"):  # "d" is missing, "zz" is not listed
        write_video(root / "Videos" / f"{name}.avi", _frames(0), 50)
    (root / "FileList.csv").write_text(
        "FileName,EF,Split,PatientID\n"
        "a,50,TRAIN,P1\n"      # row 1
        "b,150,TRAIN,P2\n"     # row 2: EF out of range
        "c,40,FOO,P3\n"        # row 3: unknown split
        "a.avi,45,TRAIN,P4\n"  # row 4: duplicate of row 1
        "d,30,VAL,P5\n"        # row 5: video missing
        "e,abc,VAL,P6\n"       # row 6: EF not a number
        "f,60,TEST,P1\n"       # row 7: P1 is also in TRAIN (row 1)
    )
    with pytest.raises(DatasetError) as info:
        EchoNetDataset.open(root)
    message = str(info.value)
    assert "has 6 problem(s)" in message and "line = row + 1" in message
    expected = [
        "FileList.csv row 2 (line 3): EF 150 is outside [0, 100]",
        "FileList.csv row 3 (line 4): Split 'FOO' is not one of TRAIN, VAL, TEST",
        "FileName 'a' is listed 2 times: FileList.csv row 1 (line 2); FileList.csv row 4 (line 5)",
        "FileList.csv row 5 (line 6): Videos/d.avi is listed but not present",
        "FileList.csv row 6 (line 7): EF 'abc' is not a number",
        "patient 'P1' is in more than one split: TRAIN (FileList.csv row 1 (line 2)); "
        "TEST (FileList.csv row 7 (line 8))",
        "Note: 1 video(s) in Videos/ not listed in FileList.csv: zz.avi",
    ]
    for text in expected:
        assert text in message, text
    # check_files=False skips only the file comparison.
    with pytest.raises(DatasetError) as info:
        EchoNetDataset.open(root, check_files=False)
    assert "has 5 problem(s)" in str(info.value) and "d.avi" not in str(info.value)


def test_missing_filelist_and_columns(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        EchoNetDataset.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"missing FileList\.csv"):
        EchoNetDataset.open(tmp_path / "empty")
    (tmp_path / "half" / "A4C" / "Videos").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"A4C/Videos/ has no A4C/FileList\.csv"):
        EchoNetDataset.open(tmp_path / "half")
    (tmp_path / "cols").mkdir()
    (tmp_path / "cols" / "FileList.csv").write_text("FileName,ESV,split\nx,3,TRAIN\n")
    with pytest.raises(DatasetError, match=r"lacks required columns \['EF'\]"):
        EchoNetDataset.open(tmp_path / "cols", check_files=False)
    (tmp_path / "cols" / "FileList.csv").write_text("FileName,EF,ef,Split\nx,3,3,TRAIN\n")
    with pytest.raises(DatasetError, match=r"columns \['EF', 'ef'\] all mean EF"):
        EchoNetDataset.open(tmp_path / "cols", check_files=False)


def test_writer_failure_leaves_no_dataset(tmp_path):
    root = tmp_path / "synthetic"
    with pytest.raises(RuntimeError, match="generator crashed"):
        with EchoNetWriter(root) as writer:
            writer.add("s0", _frames(0), 30, ef=50, split="TRAIN")
            writer.add("s1", _frames(1), 30, ef=50, split="TRAIN")
            assert len(list((root / "Videos").iterdir())) == 2
            raise RuntimeError("generator crashed")
    assert not (root / "FileList.csv").exists()
    assert not root.exists()  # the writer made the folders, so it removed them

    # A folder that existed before keeps what it had; only this writer's videos go.
    (root / "Videos").mkdir(parents=True)
    (root / "Videos" / "old.avi").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"ef must be a percentage in \[0, 100\], got 150"):
        with EchoNetWriter(root) as writer:
            writer.add("s0", _frames(0), 30, ef=50, split="TRAIN")
            writer.add("s1", _frames(1), 30, ef=150, split="TRAIN")
    assert sorted(p.name for p in (root / "Videos").iterdir()) == ["old.avi"]
    assert not (root / "FileList.csv").exists()
    # Frames write_video refuses (RGB here) fail the same way.
    with pytest.raises(VideoError, match=r"frames must have shape \(T, H, W\)"):
        with EchoNetWriter(root) as writer:
            writer.add("s0", _frames(0), 30, ef=50, split="TRAIN")
            writer.add("s1", np.zeros((T, H, W, 3), np.float32), 30, ef=50, split="TRAIN")
    assert sorted(p.name for p in root.rglob("*")) == ["Videos", "old.avi"]


def test_writer_checks_rows_and_refuses_existing(tiny, tmp_path):
    with pytest.raises(DatasetError, match="already exists; pass overwrite=True"):
        EchoNetWriter(tiny)
    cases = [
        (dict(name="x", ef=50, split="FOO"), r"split must be one of TRAIN, VAL, TEST, got 'FOO'"),
        (dict(name="x", ef=50, split="TEST", patient_id="P"), r"patient 'P' is already in split TRAIN"),
        (dict(name="first", ef=50, split="TRAIN"), r"a video named 'first' was already added"),
        (dict(name="../x", ef=50, split="TRAIN"), r"bare file name"),
        (dict(name="x", ef=50, split="TRAIN", Split2=1, FPS=3), r"clash with standard FileList columns"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(DatasetError, match=pattern):
            with EchoNetWriter(tmp_path / "w") as writer:
                writer.add("first", _frames(0), 30, ef=50, split="TRAIN", patient_id="P")
                writer.add(kwargs.pop("name"), _frames(1), 30, **kwargs)
        assert not (tmp_path / "w").exists()
    # overwrite=True replaces the listed set.
    with EchoNetWriter(tiny, overwrite=True) as writer:
        writer.add("new", _frames(0), 30, ef=20.0, split="TEST")
    ds = EchoNetDataset.open(tiny)
    assert ds.names == ["new"] and len(ds.notes) == 1 and "6 video(s)" in ds.notes[0]


# --------------------------------------------------------------------------- hostile input


def test_filenames_with_their_own_extension_are_found_as_written(tmp_path):
    root = tmp_path / "mixed"
    videos = root / "Videos"
    videos.mkdir(parents=True)
    write_video(videos / "clip.mp4", _frames(0), 50)
    write_video(videos / "anim.gif", _frames(1), 25)
    write_video(videos / "arr.npy", _frames(2), 50)
    write_video(videos / "Upper.AVI", _frames(3), 50)
    write_video(videos / "plain.avi", _frames(4), 50)
    (root / "FileList.csv").write_text(
        "FileName,EF,Split\nclip.mp4,50,TRAIN\nanim.gif,51,TRAIN\narr.npy,52,VAL\nUpper.AVI,53,TEST\nplain,54,TEST\n"
    )
    ds = EchoNetDataset.open(root)
    assert ds.names == ["clip.mp4", "anim.gif", "arr.npy", "Upper", "plain"]
    assert [Path(p).name for p in ds.table["path"]] == ["clip.mp4", "anim.gif", "arr.npy", "Upper.AVI", "plain.avi"]
    assert ds.notes == ()
    assert ds.load("clip.mp4").frames.shape == (T, H, W) and ds.load("anim.gif").fps == pytest.approx(25)
    # Written back, every row still names its file.
    write_filelist(root, ds.table)
    again = EchoNetDataset.open(root)
    assert again.names == ds.names and again.table["path"].tolist() == ds.table["path"].tolist()
    assert (root / "FileList.csv").read_text().splitlines()[4].startswith("Upper.AVI,")
    # A case mismatch is named as such.
    (root / "FileList.csv").write_text("FileName,EF,Split\nCLIP.mp4,50,TRAIN\n")
    with pytest.raises(DatasetError, match=r"Videos/CLIP\.mp4 is listed but not present \(there is 'clip\.mp4'"):
        EchoNetDataset.open(root)


def _partly_broken(tmp_path) -> Path:
    root = tmp_path / "partly"
    (root / "Videos").mkdir(parents=True)
    for name in ("ok0", "ok1", "ok2"):
        write_video(root / "Videos" / f"{name}.avi", _frames(0), 50)
    (root / "Videos" / "empty.avi").write_bytes(b"")
    (root / "Videos" / "text.avi").write_text("not a video, just notes\n")
    (root / "Videos" / "dir.avi").mkdir()
    (root / "FileList.csv").write_text(
        "FileName,EF,Split,PatientID\n"
        "ok0,50,TRAIN,P0\nempty,50,TRAIN,P1\nok1,50,VAL,P2\ngone,50,VAL,P3\ntext,50,TEST,P4\ndir,50,TEST,P5\n"
        "ok2,50,TEST,P6\n"
    )
    return root


def test_missing_and_unusable_videos_are_all_listed_by_default(tmp_path):
    root = _partly_broken(tmp_path)
    with pytest.raises(DatasetError) as info:
        EchoNetDataset.open(root)
    message = str(info.value)
    assert "has 4 problem(s)" in message
    for text in (
        "FileList.csv row 2 (line 3): Videos/empty.avi is empty (0 bytes)",
        "FileList.csv row 4 (line 5): Videos/gone.avi is listed but not present",
        "FileList.csv row 5 (line 6): Videos/text.avi is not a video (it starts with b'not a video,'",
        "FileList.csv row 6 (line 7): Videos/dir.avi is a folder, not a video file",
    ):
        assert text in message, text


def test_skip_missing_opens_the_rest_and_reports_what_was_skipped(tmp_path):
    root = _partly_broken(tmp_path)
    ds = EchoNetDataset.open(root, on_missing="skip")
    assert ds.names == ["ok0", "ok1", "ok2"] and len(ds) == 3
    assert ds.skipped["FileName"].tolist() == ["empty", "gone", "text", "dir"]
    assert ds.skipped["row"].tolist() == [f"FileList.csv row {r} (line {r + 1})" for r in (2, 4, 5, 6)]
    assert ds.skipped["reason"].iat[1] == "FileList.csv row 4 (line 5): Videos/gone.avi is listed but not present"
    assert ds.notes[-1].startswith("skipped 4 of 7 listed videos (on_missing='skip'): FileList.csv row 2")
    assert ds.split("TEST").names == ["ok2"] and len(ds.split("TEST").skipped) == 4
    assert ds.load("ok1").frames.shape == (T, H, W)
    # Other problems still raise, and a set with nothing left is an error.
    (root / "FileList.csv").write_text("FileName,EF,Split\nok0,500,TRAIN\ngone,50,TRAIN\n")
    with pytest.raises(DatasetError, match=r"has 1 problem\(s\).*\n- FileList.csv row 1 \(line 2\): EF 500 is outside"):
        EchoNetDataset.open(root, on_missing="skip")
    (root / "FileList.csv").write_text("FileName,EF,Split\ngone,50,TRAIN\nempty,50,TRAIN\n")
    with pytest.raises(DatasetError, match="all 2 listed videos are missing or unusable"):
        EchoNetDataset.open(root, on_missing="skip")
    with pytest.raises(DatasetError, match=r"on_missing must be one of 'error', 'skip'; got 'ignore'"):
        EchoNetDataset.open(root, on_missing="ignore")


def test_hostile_filelist_values(tmp_path):
    root = tmp_path / "hostile"
    root.mkdir()
    (root / "FileList.csv").write_text(
        "FileName,EF,Split,NumberOfFrames,Extra\n"
        f"a,50,{'9' * 400},4,{'9' * 30}\n"
        "b,50,TRAIN,1e30,1\n"
        "c\x01d,50,TRAIN,4,2\n"
        f"{'x' * 300},50,TRAIN,4,3\n"
    )
    with pytest.raises(DatasetError) as info:
        EchoNetDataset.open(root, check_files=False)
    message = str(info.value)
    assert "FileList.csv row 1 (line 2): Split '999" in message
    assert "FileList.csv row 2 (line 3): NumberOfFrames '1e30' is not a whole number in [1, 2**53)" in message
    assert "FileList.csv row 3 (line 4): FileName 'c\\x01d': FileName contains control characters" in message
    assert "FileName is longer than 250 bytes" in message
    (root / "FileList.csv").write_text(f"FileName,EF,Split,Extra\na,50,TRAIN,{'9' * 30}\nb,50,TRAIN,1\n")
    ds = EchoNetDataset.open(root, check_files=False)
    assert ds.table["Extra"].dtype == np.float64  # whole numbers beyond 2**53 do not wrap around as int64
    (root / "FileList.csv").write_bytes(b"FileName,EF,Split\n\xff\xfe,50,TRAIN\n")
    with pytest.raises(DatasetError, match="FileList.csv cannot be read as CSV"):
        EchoNetDataset.open(root, check_files=False)
    # One field too many in the first row: pandas would quietly make the first column the index.
    (root / "FileList.csv").write_text("FileName,EF,Split\na,50,TRAIN,extra\nb,50,TRAIN\n")
    with pytest.raises(DatasetError, match="a row has more fields than the header has columns"):
        EchoNetDataset.open(root, check_files=False)


def test_writer_refuses_names_with_another_video_extension(tmp_path):
    with pytest.raises(DatasetError, match=r"cannot add video 'clip\.mp4': the writer stores \.avi files"):
        with EchoNetWriter(tmp_path / "w") as writer:
            writer.add("clip.mp4", _frames(0), 30, ef=50, split="TRAIN")
    assert not (tmp_path / "w").exists()


def test_fast_name_checks_and_paths_equal_the_per_name_rules():
    """The vectorised FileName check and the string path joins (100,000-row FileLists)
    give what the per-name rules and pathlib give, on odd names too."""
    import random
    from pathlib import Path

    from echoaudit.data.echonet import EXTENSION, VIDEO_EXTENSIONS, _file_name, _name_problem, _name_problems, _video_path

    rng = random.Random(0)
    alphabet = "ab./\\ \x00\x1f\x7f\x80é😀AVI_-\t"
    names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 70))) for _ in range(5000)]
    names += ["", ".", "..", "a" * 63, "é" * 62, "😀" * 63, "c0.AVI", "a.", "x.npy.avi", "a.avi/"]
    s = pd.Series(names, dtype=str)
    assert _name_problems(s).tolist() == s.map(_name_problem).tolist()
    for n in names:
        if not n:
            continue
        want = n if Path(n).suffix.lower() in VIDEO_EXTENSIONS else f"{n}{EXTENSION}"
        assert _file_name(n) == want
        assert _video_path("/data/Videos", want) == str(Path("/data/Videos") / want)
