"""EchoNet-format data sets: read, validate and write ``FileList.csv`` + ``Videos/``.

Real data (EchoNet-Dynamic, EchoNet-Pediatric), the phantom data set and synthetic sets
written by a generator all share this layout, so every command reads them through
:class:`EchoNetDataset` and writes them through :class:`EchoNetWriter`.
"""

from __future__ import annotations

import math
import os
import re
import stat
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from echoaudit.errors import DatasetError
from echoaudit.fileio import atomic_path

if TYPE_CHECKING:  # the video module is imported lazily where frames are read or written
    from echoaudit.data.video import Video

__all__ = [
    "FILELIST_COLUMNS",
    "SPLITS",
    "FOLD_SPLITS",
    "REQUIRED_COLUMNS",
    "EchoNetDataset",
    "EchoNetWriter",
    "write_filelist",
]

FILELIST_COLUMNS = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
SPLITS = ("TRAIN", "VAL", "TEST")
# EchoNet-Pediatric gives ten patient folds instead of split names. Folds 0-7 train,
# 8 validates, 9 tests: 80/10/10 like EchoNet-Dynamic, and a patient stays in one fold.
FOLD_SPLITS = {**{str(k): "TRAIN" for k in range(8)}, "8": "VAL", "9": "TEST"}
# Only what the audit needs is required; EchoNet-Pediatric lists no ESV/EDV.
REQUIRED_COLUMNS = ("FileName", "EF", "Split")

FILELIST = "FileList.csv"
VIDEOS = "Videos"
EXTENSION = ".avi"
# A FileName ending in one of these names its file as written (``clip.mp4``); any other
# FileName gets EXTENSION. Same as echoaudit.data.video.READ_EXTENSIONS (not imported:
# opening a data set should not import the video module).
VIDEO_EXTENSIONS = (".avi", ".gif", ".mp4", ".npy")
ON_MISSING = ("error", "skip")
# EchoNet-Dynamic's FileList.csv is ~1 MB for 10k videos; a file 100x that is no FileList.
_MAX_FILELIST_BYTES = 100 * 2**20
# Whole numbers (frame sizes, counts, extra columns) beyond this are no int64 counts.
_MAX_WHOLE = 2**53
_INT_COLUMNS = ("FrameHeight", "FrameWidth", "NumberOfFrames")
_KNOWN_COLUMNS = (*FILELIST_COLUMNS, "PatientID", "View")
_MAX_LINES_PER_KIND = 20  # keeps a message about 10k missing videos readable


def _column_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


_CANONICAL = {_column_key(c): c for c in _KNOWN_COLUMNS}


class EchoNetDataset:
    """An EchoNet-format data set of echocardiography videos, validated when opened.

    Layout (EchoNet-Dynamic; also the phantom and synthetic sets)::

        ROOT/FileList.csv                 one row per video, columns below
        ROOT/Videos/<FileName>.avi        one clip per row (EchoNet: 112x112 gray, stored as
                                          3 equal channels; any size is read)

    Layout (EchoNet-Pediatric): one such pair per view sub-folder, used when
    ``ROOT/FileList.csv`` is absent::

        ROOT/A4C/FileList.csv, ROOT/A4C/Videos/<FileName>.avi
        ROOT/PSAX/FileList.csv, ROOT/PSAX/Videos/<FileName>.avi

    ``FileList.csv`` columns (header names match ignoring case, spaces and underscores,
    so ``filename`` and ``File_Name`` are ``FileName``; a UTF-8 BOM is accepted):

    - ``FileName`` (str, required): the video's name, with or without ``.avi``; kept
      without it, and its file is ``Videos/<FileName>.avi``. A name ending in another
      video extension (``clip.mp4``, ``.gif``, ``.npy``) names its file as written and is
      kept with that extension. Unique over the whole data set; a bare name, no folders.
    - ``EF`` (float64, required): ejection fraction in percent, 0 <= EF <= 100.
    - ``ESV``, ``EDV`` (float64): end-systolic / end-diastolic volume (mL), >= 0;
      NaN when the column is absent (EchoNet-Pediatric) or the cell is empty.
    - ``FrameHeight``, ``FrameWidth``, ``NumberOfFrames`` (int64): frame size in
      pixels and clip length, >= 1; -1 when the column is absent or the cell empty.
    - ``FPS`` (float64): frames per second, > 0; NaN when absent or empty.
    - ``Split`` (str, required): ``TRAIN``, ``VAL`` or ``TEST`` in any case, stored
      upper-case; or an EchoNet-Pediatric fold number 0-9, mapped by
      :data:`FOLD_SPLITS` (0-7 TRAIN, 8 VAL, 9 TEST).
    - ``PatientID`` (str, optional): the patient a video shows; filled with
      ``FileName`` where absent or empty (then every video is its own patient, so
      the one-patient-one-split check below cannot see shared patients).
    - ``View`` (str, optional): the echo view; in the sub-folder layout the folder's
      name (``A4C``, ``PSAX``) wins; otherwise ``"unknown"`` where absent or empty.
    - other columns are kept: float64 / int64 when every value parses as a number,
      else str.

    :attr:`table` holds one row per video with the columns above (FILELIST_COLUMNS,
    then PatientID, View, any others), and last ``path`` (str): the absolute path of
    the video file. The index is a RangeIndex; row ``i`` is video ``i``.

    Checked when opened, all at once; any problem raises one :class:`DatasetError`
    listing each with its place, written ``FileList.csv row R (line L)`` where R is
    the 1-based data row and L = R + 1 the file's line counting the header:
    a missing, unreadable or oversized ``FileList.csv``; missing required columns;
    listed videos not in ``Videos/`` (a set difference); listed videos that cannot be
    used (a folder, empty, unreadable, or a first few bytes that are no video header;
    frames are not decoded); duplicate FileNames; EF not a number or outside [0, 100];
    other malformed numbers; unknown Split values; and a patient in more than one
    split, since the privacy threshold is calibrated on unseen patients.
    Videos present but not listed are only a note (:attr:`notes`), shown with errors.

    With ``open(..., on_missing="skip")`` the rows of missing or unusable videos are
    left out instead, and listed in :attr:`skipped` (every other problem still raises).

    Frames are read only by :meth:`load`, which returns a ``Video`` with ``frames``
    (T, H, W) float32 in [0, 1] and ``fps``.
    """

    def __init__(self, root: str | Path, table: pd.DataFrame, notes: Sequence[str] = (),
                 skipped: pd.DataFrame | None = None):
        self.root = Path(root).absolute()
        self.table = table.reset_index(drop=True)
        self.notes = tuple(notes)
        #: Rows left out by ``open(..., on_missing="skip")``: FileName (str), row (str,
        #: ``FileList.csv row R (line L)``), reason (str); empty when none were.
        self.skipped = skipped if skipped is not None else _skipped_frame([])
        self._position = {name: i for i, name in enumerate(self.table["FileName"])}

    @classmethod
    def open(
        cls,
        root: str | Path,
        *,
        split: str | Sequence[str] | None = None,
        check_files: bool = True,
        on_missing: str = "error",
    ) -> "EchoNetDataset":
        """Read and validate the data set at ``root``; keep only ``split`` if given.

        Args:
            root: the folder holding ``FileList.csv`` (or the view sub-folders).
            split: a split name or several (any case); None keeps every video. The whole
                FileList is validated first, so a patient shared with a split that is
                not kept is still an error.
            check_files: compare the listed videos with the ``Videos/`` folders and read
                the first bytes of each (a video header). Frames are never decoded here.
            on_missing: ``"error"`` (default): a listed video that is missing or cannot
                be used is a problem like any other. ``"skip"``: its row is left out and
                recorded in :attr:`skipped` with the reason, and a note says how many;
                every other problem still raises, and so does a data set left empty.

        Raises:
            DatasetError: listing every problem found (see the class docstring), or for
                a ``split`` that is not one of SPLITS, or an ``on_missing`` not in
                ON_MISSING.
        """
        root = Path(root).absolute()
        keep = _split_names(split)
        if on_missing not in ON_MISSING:
            raise DatasetError(f"on_missing must be one of {', '.join(map(repr, ON_MISSING))}; got {on_missing!r}")
        try:
            is_dir = root.is_dir()
        except (OSError, ValueError):
            is_dir = False
        if not is_dir:
            raise DatasetError(f"EchoNet data set folder {str(root)!r} does not exist or is not a folder")
        problems: list[tuple[str, str]] = []
        notes: list[str] = []
        unusable: list[tuple[int, str]] = []  # (row of the whole table, problem text)
        parts, offset = [], 0
        for src in _find_sources(root, problems):
            part = _read_source(src, check_files, problems, notes, unusable, offset)
            if part is not None:
                parts.append(part)
                offset += len(part)
        table = pd.concat(parts, ignore_index=True) if parts else None
        if on_missing == "error":
            problems += [("missing videos", text) for _, text in unusable]
        if table is not None and "FileName" in table and "Split" in table:
            _check_across_rows(table, problems)
        if problems:
            raise DatasetError(_format_problems(root, problems, notes))
        skipped = _skipped_frame([(table["FileName"].iat[i], table["_ref"].iat[i], text) for i, text in unusable]
                                 if on_missing == "skip" else [])
        if len(skipped):
            table = table.drop(index=[i for i, _ in unusable])
            if table.empty:
                raise DatasetError(_format_problems(root, [("missing videos", text) for _, text in unusable], notes,
                                                    head=f"all {len(skipped)} listed videos are missing or unusable"))
            notes.append(f"skipped {len(skipped)} of {len(skipped) + len(table)} listed videos (on_missing='skip'): "
                         + "; ".join(skipped["reason"].head(5)) + (" ..." if len(skipped) > 5 else ""))
        # Split went through a str-or-None map; fix every text column to pandas' str dtype.
        table = table.astype({c: str for c in ("FileName", "Split", "PatientID", "View", "path")})
        table = _order_columns(table.drop(columns="_ref"))
        dataset = cls(root, table, notes, skipped)
        return dataset if keep is None else dataset._subset(keep)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        counts = self.table["Split"].value_counts()
        splits = ", ".join(f"{s}={int(counts.get(s, 0))}" for s in SPLITS)
        return f"EchoNetDataset(root={str(self.root)!r}, videos={len(self)}, {splits})"

    @property
    def names(self) -> list[str]:
        """FileName of each row (without ``.avi``), in table order."""
        return self.table["FileName"].tolist()

    @property
    def patients(self) -> np.ndarray:
        """(N,) str: PatientID of each row."""
        return self.table["PatientID"].to_numpy(dtype=str)

    @property
    def ef(self) -> np.ndarray:
        """(N,) float64: ejection fraction (percent) of each row."""
        return self.table["EF"].to_numpy(dtype=np.float64)

    def split(self, name: str | Sequence[str]) -> "EchoNetDataset":
        """The rows of one split (or several), as a data set with the same root."""
        return self._subset(_split_names(name))

    def row(self, i_or_name: int | str) -> pd.Series:
        """One row of :attr:`table`, by position (negative counts from the end) or FileName."""
        return self.table.iloc[self._locate(i_or_name)]

    def load(self, i_or_name: int | str, **load_video_kwargs: Any) -> "Video":
        """Decode one video (by position or FileName) with ``load_video``.

        Keyword arguments (``size``, ``fps``, ``num_frames``, ``limits``...) go to
        :func:`echoaudit.data.video.load_video` unchanged.

        Raises:
            DatasetError: for an unknown position or name.
            VideoError: from ``load_video`` for a file that cannot be decoded.
        """
        from echoaudit.data.video import load_video

        return load_video(self.table.at[self._locate(i_or_name), "path"], **load_video_kwargs)

    def _subset(self, keep: Sequence[str]) -> "EchoNetDataset":
        return type(self)(self.root, self.table[self.table["Split"].isin(keep)], self.notes, self.skipped)

    def _locate(self, i_or_name: int | str) -> int:
        if isinstance(i_or_name, (int, np.integer)) and not isinstance(i_or_name, bool):
            i = int(i_or_name)
            if not -len(self) <= i < len(self):
                raise DatasetError(f"row {i} is out of range for a data set of {len(self)} videos")
            return i % len(self)
        if isinstance(i_or_name, str):
            name = _strip_extension(i_or_name.strip())
            if name in self._position:
                return self._position[name]
            raise DatasetError(
                f"no video named {i_or_name!r} in this data set of {len(self)} videos"
                f" (names look like {self.names[:3]})"
            )
        raise DatasetError(f"expected a row number (int) or a FileName (str), got {i_or_name!r}")


class EchoNetWriter:
    """Write an EchoNet-Dynamic-layout data set: ``Videos/<name>.avi`` + ``FileList.csv``.

    Use as a context manager; :meth:`add` writes each video at once (atomically, with
    ``write_video``) and keeps its row. ``FileList.csv`` is written, atomically, only when
    the block ends without an exception. On an exception the videos written so far are
    deleted and no ``FileList.csv`` is written, so a half-made folder never looks like a
    data set. Rows are checked as they are added (EF range, split, one split per patient,
    unique names), so the reader will accept what the writer wrote.

    Args:
        root: the data set folder (made if missing).
        overwrite: allow a root that already holds a ``FileList.csv``. The old
            ``FileList.csv`` is deleted when the block starts (its videos may be replaced
            one by one); old videos that are not added again stay and are reported as
            unlisted by the reader.

    Raises:
        DatasetError: the root already holds a ``FileList.csv`` and ``overwrite`` is False.
    """

    def __init__(self, root: str | Path, *, overwrite: bool = False):
        self.root = Path(root).absolute()
        self.overwrite = overwrite
        self._check_root()
        self._rows: list[dict[str, Any]] = []
        self._written: list[Path] = []
        self._names: set[str] = set()
        self._patient_split: dict[str, str] = {}
        self._made: list[Path] = []
        self._active = False

    def _check_root(self) -> None:
        if (self.root / FILELIST).exists() and not self.overwrite:
            raise DatasetError(
                f"{str(self.root / FILELIST)!r} already exists; pass overwrite=True to replace "
                "that data set, or choose an empty folder"
            )

    def __enter__(self) -> "EchoNetWriter":
        self._check_root()  # again: the folder may have changed since __init__
        for folder in (self.root, self.root / VIDEOS):
            if not folder.exists():
                folder.mkdir(parents=True)
                self._made.append(folder)
        # An old FileList.csv next to partly replaced videos would look complete if we fail.
        (self.root / FILELIST).unlink(missing_ok=True)
        self._active = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._active = False
        try:
            if exc_type is None:
                write_filelist(self.root, self.table)
                return False
        except BaseException:
            self._remove_written()
            raise
        self._remove_written()
        return False

    @property
    def table(self) -> pd.DataFrame:
        """The rows added so far, typed as :attr:`EchoNetDataset.table` (without ``path``)."""
        return _typed_rows(self._rows)

    def add(
        self,
        name: str,
        frames: np.ndarray,
        fps: float,
        *,
        ef: float,
        esv: float = math.nan,
        edv: float = math.nan,
        split: str,
        patient_id: str | None = None,
        view: str | None = None,
        **extra_columns: Any,
    ) -> Path:
        """Write ``Videos/<name>.avi`` from ``frames`` and record its FileList row.

        Args:
            name: FileName, a bare name (``.avi`` is added, or stripped if given).
            frames: (T, H, W) gray frames in a form ``write_video`` accepts
                (float in [0, 1] or uint8).
            fps: frames per second, > 0.
            ef: ejection fraction in percent, 0 <= ef <= 100.
            esv, edv: volumes in mL (>= 0), NaN when unknown.
            split: TRAIN, VAL or TEST (any case).
            patient_id: the patient shown; defaults to ``name``. A patient keeps one split.
            view: the echo view; ``"unknown"`` when None.
            **extra_columns: more FileList columns (e.g. ``Seed=3``); missing in a row -> empty.

        Returns:
            The path of the video written.

        Raises:
            DatasetError: bad name, values, split, a duplicate name, or a patient already
                added in another split.
            VideoError: from ``write_video``: frames not (T, H, W) uint8 / float, bad fps.
        """
        if not self._active:
            raise DatasetError("EchoNetWriter.add() is only allowed inside its `with` block")
        name = _strip_extension(str(name).strip())
        problem = _name_problem(name)
        if not problem and _file_name(name) != f"{name}{EXTENSION}":
            problem = f"the writer stores {EXTENSION} files; give the name without the {Path(name).suffix} extension"
        if problem:
            raise DatasetError(f"cannot add video {name!r}: {problem}")
        if name in self._names:
            raise DatasetError(f"a video named {name!r} was already added; FileNames must be unique")
        ef_value = _number(ef, "ef")
        if not 0.0 <= ef_value <= 100.0:
            raise DatasetError(f"ef must be a percentage in [0, 100], got {ef!r} for video {name!r}")
        esv_value, edv_value = _number(esv, "esv"), _number(edv, "edv")
        for label, value in (("esv", esv_value), ("edv", edv_value)):
            if not (math.isnan(value) or 0.0 <= value < math.inf):
                raise DatasetError(f"{label} must be a volume >= 0 or NaN, got {value!r} for video {name!r}")
        split_value = str(split).strip().upper()
        if split_value not in SPLITS:
            raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {split!r} for video {name!r}")
        patient = name if patient_id is None or str(patient_id).strip() == "" else str(patient_id).strip()
        earlier = self._patient_split.get(patient)
        if earlier is not None and earlier != split_value:
            raise DatasetError(
                f"patient {patient!r} is already in split {earlier}, cannot add video {name!r} to "
                f"{split_value}: a patient must stay in one split"
            )
        clash = sorted(c for c in extra_columns if _column_key(c) in _CANONICAL or c == "path")
        if clash:
            raise DatasetError(f"extra columns {clash} clash with standard FileList columns {_KNOWN_COLUMNS}")
        from echoaudit.data.video import write_video

        # write_video checks frames (T, H, W) and fps before it writes anything.
        path = write_video(self.root / VIDEOS / f"{name}{EXTENSION}", frames, fps)
        self._written.append(Path(path))
        self._names.add(name)
        self._patient_split[patient] = split_value
        num_frames, height, width = np.shape(frames)
        self._rows.append({
            "FileName": name, "EF": ef_value, "ESV": esv_value, "EDV": edv_value,
            "FrameHeight": height, "FrameWidth": width, "FPS": float(fps), "NumberOfFrames": num_frames,
            "Split": split_value, "PatientID": patient,
            "View": "unknown" if view is None or str(view).strip() == "" else str(view).strip(),
            **extra_columns,
        })
        return Path(path)

    def _remove_written(self) -> None:
        for path in self._written:
            path.unlink(missing_ok=True)
        self._written.clear()
        for folder in reversed(self._made):  # only folders this writer made, and only if empty
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self._made.clear()


def write_filelist(root: str | Path, table: pd.DataFrame) -> Path:
    """Write ``ROOT/FileList.csv`` atomically from a table like :attr:`EchoNetDataset.table`.

    Columns: FILELIST_COLUMNS first, then the others; ``path`` is dropped (it is specific
    to one machine). FileName is written without ``.avi`` (with its own extension when
    its file is not ``<FileName>.avi``, so the reader finds it), Split upper-case; -1 in the
    int columns and NaN are written as empty cells, which the reader reads back as -1 / NaN.

    Raises:
        DatasetError: ``table`` lacks one of REQUIRED_COLUMNS.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DatasetError(f"cannot write FileList.csv: table lacks columns {missing}; required: {list(REQUIRED_COLUMNS)}")
    out = table.drop(columns=[c for c in ("path",) if c in table.columns]).copy()
    for column in FILELIST_COLUMNS:
        if column not in out.columns:
            out[column] = -1 if column in _INT_COLUMNS else math.nan
    paths = table["path"] if "path" in table.columns else [None] * len(out)
    out["FileName"] = [_listed_name(str(n), p) for n, p in zip(out["FileName"], paths)]
    out["Split"] = out["Split"].astype(str).str.upper()
    for column in _INT_COLUMNS:
        ints = pd.to_numeric(out[column], errors="coerce")
        out[column] = [("" if pd.isna(v) or v == -1 else str(int(v))) for v in ints]
    out = _order_columns(out)
    path = Path(root) / FILELIST
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, na_rep="")
    return path


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Source:
    """One FileList.csv and its Videos/ folder; ``view`` is set in the sub-folder layout."""

    folder: Path
    label: str  # how messages name the FileList: "FileList.csv" or "A4C/FileList.csv"
    view: str | None

    @property
    def csv(self) -> Path:
        return self.folder / FILELIST

    @property
    def videos(self) -> Path:
        return self.folder / VIDEOS


def _find_sources(root: Path, problems: list[tuple[str, str]]) -> list[_Source]:
    if (root / FILELIST).is_file():
        return [_Source(root, FILELIST, None)]
    views = sorted(
        d for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and ((d / FILELIST).exists() or (d / VIDEOS).is_dir())
    )
    if not views:
        problems.append(("missing FileList.csv", (
            f"missing FileList.csv: found neither {FILELIST} nor <view>/{FILELIST} "
            "(EchoNet-Pediatric layout, e.g. A4C/, PSAX/) in the folder"
        )))
        return []
    sources = []
    for d in views:
        if (d / FILELIST).is_file():
            sources.append(_Source(d, f"{d.name}/{FILELIST}", d.name))
        else:
            problems.append(("missing FileList.csv", f"missing FileList.csv: {d.name}/{VIDEOS}/ has no {d.name}/{FILELIST}"))
    return sources


def _read_source(
    src: _Source, check_files: bool, problems: list[tuple[str, str]], notes: list[str],
    unusable: list[tuple[int, str]], offset: int,
) -> pd.DataFrame | None:
    try:
        size = src.csv.stat().st_size
        if size > _MAX_FILELIST_BYTES:
            problems.append(("unreadable FileList.csv", (
                f"{src.label} is {size} bytes; a FileList.csv is at most {_MAX_FILELIST_BYTES} bytes here "
                "(EchoNet-Dynamic's is ~1 MB)"
            )))
            return None
        with warnings.catch_warnings():
            # index_col=False: a row with more fields than the header must not silently
            # turn the first columns into the index; pandas warns about it, we refuse it.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(src.csv, dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False)
    except pd.errors.ParserWarning:
        problems.append(("unreadable FileList.csv", f"{src.label} cannot be read as CSV: a row has more fields "
                                                    "than the header has columns"))
        return None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        problems.append(("unreadable FileList.csv", f"{src.label} cannot be read as CSV: {str(e).strip()[:300]}"))
        return None
    except OSError as e:
        problems.append(("unreadable FileList.csv", f"{src.label} cannot be read ({e.strerror or e})"))
        return None
    raw = _normalise_columns(raw, src, problems)
    if raw is None:
        return None
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        problems.append(("missing columns", (
            f"{src.label} lacks required columns {missing} (has {list(raw.columns)}; "
            f"required {list(REQUIRED_COLUMNS)}, optional {[c for c in _KNOWN_COLUMNS if c not in REQUIRED_COLUMNS]})"
        )))
    refs = [f"{src.label} row {r} (line {r + 1})" for r in range(1, len(raw) + 1)]

    def bad(kind: str, mask, text) -> None:
        for i in np.flatnonzero(np.asarray(mask)):
            problems.append((kind, f"{refs[i]}: {text(i)}"))

    table = pd.DataFrame({"_ref": refs})
    if "FileName" in raw:
        names = raw["FileName"].str.strip().map(_strip_extension)
        name_problems = _name_problems(names)
        bad("bad FileName", name_problems != "", lambda i: f"FileName {raw['FileName'].iat[i]!r}: {name_problems.iat[i]}")
        table["FileName"] = names
    if "EF" in raw:
        ef, text = _parse_float(raw["EF"])
        bad("bad EF", ef.isna(), lambda i: "EF is empty" if text.iat[i] == "" else f"EF {text.iat[i]!r} is not a number")
        bad("bad EF", ef.notna() & ~ef.between(0.0, 100.0), lambda i: f"EF {text.iat[i]} is outside [0, 100]")
        table["EF"] = ef
    for column in ("ESV", "EDV"):
        values, text = _parse_float(raw[column]) if column in raw else (pd.Series(math.nan, index=raw.index), None)
        if text is not None:
            wrong = (values.isna() & ~text.str.lower().isin(["", "nan"])) | (values < 0) | np.isinf(values)
            bad(f"bad {column}", wrong, lambda i, c=column, t=text: f"{c} {t.iat[i]!r} is not a volume >= 0")
        table[column] = values
    for column in _INT_COLUMNS:
        if column in raw:
            values, text = _parse_float(raw[column])
            wrong = (text != "") & ~(values.notna() & (values % 1 == 0) & (values >= 1) & (values < _MAX_WHOLE))
            bad(f"bad {column}", wrong, lambda i, c=column, t=text: f"{c} {t.iat[i]!r} is not a whole number in [1, 2**53)")
            table[column] = values.where(~wrong & (text != ""), -1).astype(np.int64)
        else:
            table[column] = np.full(len(raw), -1, dtype=np.int64)
    if "FPS" in raw:
        fps, text = _parse_float(raw["FPS"])
        wrong = (text != "") & ~(fps > 0) | np.isinf(fps)
        bad("bad FPS", wrong, lambda i: f"FPS {text.iat[i]!r} is not a number > 0")
        table["FPS"] = fps
    else:
        table["FPS"] = math.nan
    if "Split" in raw:
        splits = raw["Split"].map({v: _normalise_split(v) for v in raw["Split"].unique()})  # a few distinct values
        allowed = f"{', '.join(SPLITS)} (any case) or a fold number 0-9 (0-7 TRAIN, 8 VAL, 9 TEST)"
        bad("unknown Split", splits.isna(), lambda i: f"Split {raw['Split'].iat[i]!r} is not one of {allowed}")
        table["Split"] = splits
    if "FileName" in table:
        patient = raw["PatientID"].str.strip() if "PatientID" in raw else pd.Series("", index=raw.index)
        table["PatientID"] = patient.where(patient != "", table["FileName"])
        if src.view is not None:
            table["View"] = src.view
        else:
            view = raw["View"].str.strip() if "View" in raw else pd.Series("", index=raw.index)
            table["View"] = view.where(view != "", "unknown")
        written = raw["FileName"].str.strip()
        folder = str(src.videos)
        table["path"] = [_video_path(folder, _file_name(n)) for n in written]
        if check_files:
            _check_files(src, table, problems, notes, unusable, offset)
    for column in raw.columns:
        if column not in _KNOWN_COLUMNS:
            table[column] = _infer_extra(raw[column])
    return table


def _normalise_columns(raw: pd.DataFrame, src: _Source, problems: list[tuple[str, str]]) -> pd.DataFrame | None:
    renamed = [_CANONICAL.get(_column_key(c), str(c).strip()) for c in raw.columns]
    seen: dict[str, list[str]] = defaultdict(list)
    for original, new in zip(raw.columns, renamed):
        seen[new].append(str(original))
    clashes = {new: old for new, old in seen.items() if len(old) > 1}
    for new, old in clashes.items():
        problems.append(("duplicate columns", f"{src.label}: columns {old} all mean {new}; keep one"))
    if clashes:
        return None
    return raw.set_axis(renamed, axis=1)


def _check_files(
    src: _Source, table: pd.DataFrame, problems: list[tuple[str, str]], notes: list[str],
    unusable: list[tuple[int, str]], offset: int,
) -> None:
    """Listed vs present as a set difference, then the first bytes of each listed file.

    Per-row findings go to ``unusable`` as (offset + row, text): the caller reports them
    as problems, or skips those rows (``on_missing="skip"``)."""
    prefix = "" if src.view is None else f"{src.view}/"
    try:
        present = {p.name for p in src.videos.iterdir()} if src.videos.is_dir() else None
    except OSError as e:
        problems.append(("missing videos", f"{prefix}{VIDEOS}/ cannot be listed ({e.strerror or e})"))
        return
    refs = table["_ref"].tolist()
    if present is None:
        for i, ref in enumerate(refs):
            unusable.append((offset + i, f"{ref}: {prefix}{VIDEOS}/ folder does not exist"))
        return
    by_lower = defaultdict(list)
    for name in present:
        by_lower[name.lower()].append(name)
    files = [os.path.basename(p) for p in table["path"]]  # = Path(p).name: _video_path normalised p
    folder = str(src.videos)
    for i, file in enumerate(files):
        where = f"{refs[i]}: {prefix}{VIDEOS}/{file}"
        if file not in present:
            near = [n for n in by_lower.get(file.lower(), []) if n != file]
            hint = f" (there is {near[0]!r}: names are case-sensitive)" if near else ""
            unusable.append((offset + i, f"{where} is listed but not present{hint}"))
            continue
        reason = _unusable_video(os.path.join(folder, file))
        if reason:
            unusable.append((offset + i, f"{where} {reason}"))
    unlisted = sorted(n for n in present - set(files)
                      if Path(n).suffix.lower() in VIDEO_EXTENSIONS and (src.videos / n).is_file())
    if unlisted:
        shown = ", ".join(unlisted[:10]) + (" ..." if len(unlisted) > 10 else "")
        notes.append(f"{len(unlisted)} video(s) in {prefix}{VIDEOS}/ not listed in {src.label}: {shown}")


def _unusable_video(path: str | Path) -> str:
    """Why the file at ``path`` cannot be a video ("" when its first bytes are a video
    header). Reads at most 16 bytes: frames are decoded only by ``load``."""
    from echoaudit.data.video import sniff_container

    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            return "is a folder, not a video file"
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file (a device, pipe or socket)"
        if info.st_size == 0:
            return "is empty (0 bytes)"
        with open(path, "rb", buffering=0) as f:
            head = f.read(16)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if sniff_container(head) is None:
        return f"is not a video (it starts with {head[:12]!r}; no AVI, MP4, GIF or NumPy header)"
    return ""


def _check_across_rows(table: pd.DataFrame, problems: list[tuple[str, str]]) -> None:
    """Checks that need every view's rows: unique FileNames, one split per patient."""
    # Vectorised first, so that 10k valid rows cost milliseconds; loops only over offenders.
    repeated = table[table["FileName"].duplicated(keep=False)]
    for name, group in repeated.groupby("FileName", sort=False):
        problems.append(("duplicate FileName", (
            f"FileName {name!r} is listed {len(group)} times: {'; '.join(group['_ref'])}"
        )))
    if "PatientID" not in table:
        return
    valid = table[table["Split"].notna()]
    n_splits = valid.groupby("PatientID", sort=False)["Split"].transform("nunique")
    for patient, group in valid[n_splits > 1].groupby("PatientID", sort=False):
        where = "; ".join(
            f"{s} ({', '.join(group.loc[group['Split'] == s, '_ref'])})"
            for s in SPLITS if (group["Split"] == s).any()
        )
        problems.append(("patient in two splits", (
            f"patient {patient!r} is in more than one split: {where}; a patient must stay in one "
            "split (the privacy threshold is calibrated on unseen patients)"
        )))


def _format_problems(root: Path, problems: list[tuple[str, str]], notes: list[str], head: str = "") -> str:
    lines = [
        f"EchoNet data set {str(root)!r} has {len(problems)} problem(s){': ' + head if head else ''} "
        "(rows are 1-based data rows of FileList.csv; line = row + 1, the header is line 1):"
    ]
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, text in problems:
        by_kind[kind].append(text)
    for kind, texts in by_kind.items():
        lines += [f"- {t}" for t in texts[:_MAX_LINES_PER_KIND]]
        if len(texts) > _MAX_LINES_PER_KIND:
            lines.append(f"- ... and {len(texts) - _MAX_LINES_PER_KIND} more '{kind}' problems")
    lines += [f"Note: {n}" for n in notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _strip_extension(name: str) -> str:
    return name[: -len(EXTENSION)] if name.lower().endswith(EXTENSION) else name


def _video_path(folder: str, file: str) -> str:
    """``str(Path(folder) / file)``: plain string joining for a bare file name (pathlib
    costs seconds at 100,000 rows), pathlib's normalisation for anything else."""
    if "/" in file or (os.altsep and os.altsep in file) or (os.sep != "/" and os.sep in file):
        return str(Path(folder) / file)
    return os.path.join(folder, file)


def _file_name(name: str) -> str:
    """The file in Videos/ of a FileName as written in FileList.csv: a name with a video
    extension (``clip.mp4``, ``c0.avi``, ``c0.AVI``) is the file's name, any other name
    gets ``.avi``."""
    # os.path.splitext of a bare name gives Path's suffix, or "." where Path gives "" (neither
    # a video extension); pathlib costs seconds at 100,000 rows
    bare = "/" not in name and not (os.altsep and os.altsep in name) and (os.sep == "/" or os.sep not in name)
    suffix = os.path.splitext(name)[1] if bare else Path(name).suffix
    return name if suffix.lower() in VIDEO_EXTENSIONS else f"{name}{EXTENSION}"


def _listed_name(name: str, path: str | None) -> str:
    """The FileName to write for a row: without ``.avi``, unless its file is named otherwise
    (``clip.AVI``), which is then written as the file is named so that it is found."""
    name = _strip_extension(name)
    if path is not None and isinstance(path, str) and path:
        file = Path(path).name
        if file != _file_name(name) and _strip_extension(file) != file:
            return file
    return name


def _name_problem(name: str) -> str:
    """Why ``name`` cannot be a FileName ("" when it can): it must stay inside Videos/."""
    if not name:
        return "FileName is empty"
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        return "FileName must be a bare file name (no folders, not starting with '.')"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "FileName contains control characters"
    if len(name.encode("utf-8", "surrogatepass")) > 250:
        return "FileName is longer than 250 bytes (no file system holds such a name)"
    return ""


def _name_problems(names: pd.Series) -> pd.Series:
    """:func:`_name_problem` of every name; the names a vectorised test clears (non-empty,
    no folder separator, control character or leading dot, at most 62 characters: under
    250 UTF-8 bytes) get "" without a Python call each (100,000-row FileLists)."""
    text = names.astype(str)
    fine = ((text.str.len() > 0) & (text.str.len() <= 62) & ~text.str.startswith(".")
            & ~text.str.contains(r"[/\\\x00-\x1f\x7f]", regex=True)).to_numpy(bool)
    out = pd.Series("", index=names.index, dtype=object)
    if not fine.all():
        out[~fine] = names[~fine].map(_name_problem)
    return out


def _skipped_frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["FileName", "row", "reason"]).astype(str)


def _parse_float(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    text = raw.str.strip()
    return pd.to_numeric(text, errors="coerce").astype(np.float64), text


def _number(value: Any, label: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{label} must be a number, got {value!r}") from None


def _normalise_split(value: str) -> str | None:
    value = str(value).strip().upper()
    if value in SPLITS:
        return value
    match = re.fullmatch(r"([0-9]{1,3})(\.0*)?", value)  # "8" or "8.0" once a spreadsheet touched it
    if match:
        return FOLD_SPLITS.get(str(int(match.group(1))))
    return None


def _split_names(split: str | Sequence[str] | None) -> list[str] | None:
    if split is None:
        return None
    wanted = [split] if isinstance(split, str) else list(split)
    names = [str(s).strip().upper() for s in wanted]
    unknown = [s for s, n in zip(wanted, names) if n not in SPLITS]
    if unknown or not names:
        raise DatasetError(f"split must be one or more of {', '.join(SPLITS)} (any case), got {split!r}")
    return names


def _infer_extra(raw: pd.Series) -> pd.Series:
    text = raw.str.strip()
    values = pd.to_numeric(text, errors="coerce")
    if len(text) and values.notna().all():
        whole = (values % 1 == 0).all() and (values.abs() < _MAX_WHOLE).all()
        return values.astype(np.int64) if whole else values.astype(np.float64)
    return raw


def _typed_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=None if rows else [*_KNOWN_COLUMNS])
    types = {c: np.float64 for c in ("EF", "ESV", "EDV", "FPS")} | {c: np.int64 for c in _INT_COLUMNS}
    types |= {c: str for c in ("FileName", "Split", "PatientID", "View")}
    return _order_columns(table.astype({c: t for c, t in types.items() if c in table}))


def _order_columns(table: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in _KNOWN_COLUMNS if c in table.columns]
    last = ["path"] if "path" in table.columns else []
    return table[first + [c for c in table.columns if c not in first + last] + last]
