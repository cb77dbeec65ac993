"""Latents in the published EchoNet-Synthetic layout, read safely and turned into the
project's latent cache.

The layout (``scripts/encode_video_dataset.py`` there)::

    <folder>/FileList.csv          FileName, Split (TRAIN / VAL / TEST, or a fold 0-9),
                                   and the EchoNet columns (EF, FPS, NumberOfFrames, ...)
    <folder>/Latents/<FileName>.pt one (T, 4, 14, 14) tensor per video: the VAE's sampled
                                   latents times its scaling factor (``torch.save``)

Each ``.pt`` is read with ``torch.load(path, map_location="cpu", weights_only=True)``
only and must be a dense, finite, floating (T, C, h, w) tensor of the expected latent
shape; anything else (a pickle that would build objects or run code, another structure,
NaN) is refused with the file named. The latents are scaled like the project's
(``vae.encode(...) * scaling_factor``), so they index as they are: no decoding, no
re-encoding.

Where they plug in:

* :meth:`PublishedLatents.embed_video_fn` gives the ``embed_video(i)`` that
  :func:`echoaudit.engine.build_training_index` takes, so an index can be built straight
  from the published latents (``create_workspace(..., latents=DIR)`` and
  ``echoaudit workspace create --latents DIR`` does);
* :func:`latents_from_published` writes a :class:`~echoaudit.latents.LatentCache` folder
  (``latents.npy``, ``videos.csv``, ``cache.json``) that every ``--latents`` option of the
  CLI reads. A cache is rectangular: videos are cut to ``frames`` frames (default: the
  shortest video). The published folder does not record its VAE, so the cache records
  the fingerprint of the VAE given (after checking the latent shape against it), or
  ``"unknown"``, which a cache load that expects a VAE refuses.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from echoaudit.errors import DatasetError

__all__ = ["PublishedLatents", "load_latent_file", "latents_from_published", "LATENTS", "FILELIST",
           "MAX_LATENT_FILE_BYTES", "UNKNOWN_VAE"]

LATENTS = "Latents"
FILELIST = "FileList.csv"
#: Largest latent file read: 2**26 float32 values (a (T, 4, 14, 14) video of 85k frames).
MAX_LATENT_FILE_BYTES = 2**28
UNKNOWN_VAE = "unknown"
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_MAX_LISTED = 20  # problems listed in one message


def load_latent_file(path: str | Path, shape: tuple[int, int, int] = (4, 14, 14)) -> np.ndarray:
    """One published latent video: (T, C, h, w) float32, T >= 1, finite.

    Raises:
        DatasetError: naming the file: missing, too large, refused by ``weights_only``,
            not a tensor, of another shape or dtype, or holding NaN / inf.
    """
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"latent file {path} cannot be read ({exc.strerror or exc})") from None
    if size > MAX_LATENT_FILE_BYTES:
        raise DatasetError(f"latent file {path} is {size:,} bytes; at most {MAX_LATENT_FILE_BYTES:,} are read "
                           "(MAX_LATENT_FILE_BYTES)")
    from echoaudit.models.published import _looks_like_torch_file

    if not _looks_like_torch_file(path):
        raise DatasetError(f"latent file {path} is not a torch .pt file (neither a zip archive nor a pickle)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        line = (str(exc).strip().splitlines() or [""])[0]
        raise DatasetError(f"refused latent file {path}: not a plain tensor file (torch.load with weights_only=True "
                           f"rejected it: {line[:200]}); a pickle that names other classes or functions could run "
                           "code, so it is never loaded") from None
    except Exception as exc:  # truncated zip, foreign file: torch raises many types
        raise DatasetError(f"latent file {path} is not a torch .pt file or is corrupt "
                           f"({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    if not isinstance(obj, torch.Tensor):
        raise DatasetError(f"latent file {path} holds a {type(obj).__name__}, not a tensor of shape (T, {', '.join(map(str, shape))})")
    if obj.layout != torch.strided or obj.is_quantized or not obj.is_floating_point():
        raise DatasetError(f"latent file {path} holds a {obj.dtype} {obj.layout} tensor; a dense floating-point one is needed")
    if obj.ndim != 4 or tuple(obj.shape[1:]) != tuple(shape) or obj.shape[0] < 1:
        raise DatasetError(f"latent file {path} holds a tensor of shape {tuple(obj.shape)}; expected (T, "
                           f"{', '.join(map(str, shape))}) with T >= 1 frames")
    x = obj.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise DatasetError(f"latent file {path} holds NaN or infinite values")
    return x.numpy()


def _read_filelist(path: Path) -> pd.DataFrame:
    """FileList.csv as text, strictly (size, shape of rows); columns matched ignoring case."""
    from echoaudit.data.echonet import _MAX_FILELIST_BYTES, _column_key

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"published latents: {path} cannot be read ({exc.strerror or exc})") from None
    if size > _MAX_FILELIST_BYTES:
        raise DatasetError(f"published latents: {path} is {size:,} bytes; a FileList.csv is at most "
                           f"{_MAX_FILELIST_BYTES:,} bytes here")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False)
    except pd.errors.ParserWarning:
        raise DatasetError(f"published latents: {path} cannot be read as CSV: a row has more fields than the header") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"published latents: {path} cannot be read as CSV: {str(exc).strip()[:300]}") from None
    keys = {}
    for column in raw.columns:
        keys.setdefault(_column_key(column), column)
    wanted = {"filename": "FileName", "split": "Split", "ef": "EF", "fps": "FPS", "patientid": "PatientID", "view": "View"}
    return raw.rename(columns={keys[k]: v for k, v in wanted.items() if k in keys})[
        [v for k, v in wanted.items() if k in keys]]


def _strip_video_extension(name: str) -> str:
    from echoaudit.data.echonet import VIDEO_EXTENSIONS

    return name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in VIDEO_EXTENSIONS else name


class PublishedLatents:
    """A published latents folder (module docstring), opened and checked.

    Attributes:
        folder: the folder.
        table: one row per listed video: FileName (without a video extension), PatientID
            (the FileName when not listed: EchoNet-Dynamic has one video per patient),
            Split (upper case), EF (NaN when not listed), View, FPS, path (its .pt).
        shape: (C, h, w) every latent frame must have.
    """

    def __init__(self, folder: Path, table: pd.DataFrame, shape: tuple[int, int, int]):
        self.folder, self.table, self.shape = folder, table.reset_index(drop=True), tuple(shape)
        self._row = {n: i for i, n in enumerate(self.table["FileName"])}

    @classmethod
    def open(cls, folder: str | Path, *, shape: Sequence[int] = (4, 14, 14)) -> PublishedLatents:
        """Read ``FileList.csv`` and check that every listed video has its ``Latents/*.pt``
        (the files themselves are read and checked when used).

        Raises:
            DatasetError: no FileList.csv or Latents/, missing FileName / Split columns,
                bad names, unknown splits, a name listed twice, missing latent files; one
                message lists them all (the first 20 of each kind).
        """
        from echoaudit.data.echonet import _name_problem, _normalise_split

        folder = Path(folder)
        csv, latents = folder / FILELIST, folder / LATENTS
        if not csv.is_file() or not latents.is_dir():
            raise DatasetError(f"{folder} is not a published latents folder: it needs {FILELIST} and {LATENTS}/ "
                               f"(found: {', '.join(p.name for p in sorted(folder.iterdir())[:10]) if folder.is_dir() else 'no such folder'})")
        raw = _read_filelist(csv)
        missing_cols = [c for c in ("FileName", "Split") if c not in raw]
        if missing_cols:
            raise DatasetError(f"published latents: {csv} lacks the columns {missing_cols} (has {list(raw.columns)})")
        if len(raw) == 0:
            raise DatasetError(f"published latents: {csv} lists no videos")
        problems: list[str] = []
        names = raw["FileName"].str.strip().map(_strip_video_extension)
        for i, (written, name) in enumerate(zip(raw["FileName"], names)):
            why = _name_problem(name)
            if why:
                problems.append(f"row {i + 1}: FileName {written!r}: {why}")
        splits = raw["Split"].map(_normalise_split)
        for i in np.flatnonzero(splits.isna().to_numpy()):
            problems.append(f"row {i + 1}: Split {raw['Split'].iat[i]!r} is not TRAIN, VAL, TEST or a fold 0-9")
        dup = names[names.duplicated(keep=False)]
        for name in dict.fromkeys(dup):
            problems.append(f"FileName {name!r} is listed {int((names == name).sum())} times")
        paths = [latents / f"{n}.pt" for n in names]
        if not problems:
            absent = [n for n, p in zip(names, paths) if not p.is_file()]
            problems += [f"{LATENTS}/{n}.pt is missing" for n in absent]
        if problems:
            more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
            raise DatasetError(f"published latents {folder}: {len(problems)} problems{more}:\n  "
                               + "\n  ".join(problems[:_MAX_LISTED]))
        ef = pd.to_numeric(raw["EF"].str.strip(), errors="coerce") if "EF" in raw else pd.Series(np.nan, index=raw.index)
        fps = pd.to_numeric(raw["FPS"].str.strip(), errors="coerce") if "FPS" in raw else pd.Series(np.nan, index=raw.index)
        patient = raw["PatientID"].str.strip() if "PatientID" in raw else pd.Series("", index=raw.index)
        view = raw["View"].str.strip() if "View" in raw else pd.Series("", index=raw.index)
        table = pd.DataFrame({
            "FileName": names.astype(str), "PatientID": patient.where(patient != "", names).astype(str),
            "Split": splits.astype(str), "EF": ef.astype(np.float64), "View": view.where(view != "", "unknown").astype(str),
            "FPS": fps.astype(np.float64), "path": [str(p) for p in paths],
        })
        return cls(folder, table, tuple(int(s) for s in shape))

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"PublishedLatents({str(self.folder)!r}, {len(self)} videos, {dict(self.table['Split'].value_counts())})"

    @property
    def names(self) -> list[str]:
        return list(self.table["FileName"])

    def split(self, name: str | Sequence[str]) -> PublishedLatents:
        keep = [name] if isinstance(name, str) else list(name)
        keep = [str(s).strip().upper() for s in keep]
        return type(self)(self.folder, self.table[self.table["Split"].isin(keep)], self.shape)

    def get(self, i_or_name: int | str) -> np.ndarray:
        """(T, C, h, w) float32 latents of one video (read and checked now)."""
        if isinstance(i_or_name, str):
            if i_or_name not in self._row:
                raise DatasetError(f"published latents {self.folder} list no video {i_or_name!r}")
            i_or_name = self._row[i_or_name]
        return load_latent_file(self.table["path"].iat[int(i_or_name)], self.shape)

    def fingerprint(self, names: Sequence[str]) -> str:
        """sha256 over the named videos' file names, sizes and modification times (cheap
        at EchoNet scale; a rewritten file changes it): what a resumed index checks."""
        import hashlib

        h = hashlib.sha256()
        for n in names:
            st = Path(self.get_path(n)).stat()
            h.update(f"{n}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def get_path(self, name: str) -> Path:
        if name not in self._row:
            raise DatasetError(f"published latents {self.folder} list no video {name!r}")
        return Path(self.table["path"].iat[self._row[name]])

    def embed_video_fn(self, reid, names: Sequence[str], *, index_stride: int = 4,
                       batch_size: int = 512) -> Callable[[int], np.ndarray]:
        """``embed_video(i)`` for :func:`echoaudit.engine.build_training_index`: the re-ID
        embeddings of frames 0, s, 2s, ... (s = ``index_stride``) of video ``names[i]``
        (the data set's rows), read from these latents instead of decoded and encoded.

        Raises:
            DatasetError: a name these latents do not list (all such names counted).
        """
        import torch

        names = [str(n) for n in names]
        absent = [n for n in names if n not in self._row]
        if absent:
            raise DatasetError(f"published latents {self.folder} lack {len(absent)} of the data set's videos, e.g. "
                               f"{', '.join(absent[:5])}")
        if index_stride < 1:
            raise ValueError(f"index_stride must be >= 1; got {index_stride}")

        @torch.no_grad()
        def embed_video(i: int) -> np.ndarray:
            z = torch.from_numpy(np.ascontiguousarray(self.get(names[i])[::index_stride]))
            return torch.cat([reid.embed(z[j : j + batch_size]) for j in range(0, len(z), batch_size)]).numpy().astype(np.float32)

        return embed_video


def latents_from_published(folder: str | Path, out: str | Path, *, vae=None, vae_fingerprint: str | None = None,
                           frames: int | None = None, size: int = 112, shape: Sequence[int] | None = None,
                           progress: Callable[[float, str], None] | None = None):
    """Convert a published latents folder into a :class:`~echoaudit.latents.LatentCache`.

    Args:
        folder: the published folder (``FileList.csv``, ``Latents/``).
        out: the cache folder to write (replaced whole, atomically).
        vae: a ``FrameVAE``: the latent shape is checked against ``vae.latent_shape(size)``
            and its fingerprint recorded. Or ``vae_fingerprint``: recorded as given. Neither:
            ``"unknown"`` is recorded, which ``LatentCache.load(expected_vae=...)`` refuses.
        frames: frames per video in the cache (default: the shortest video's length; a
            video shorter than ``frames`` is an error naming it).
        size: frame side in pixels the latents stand for (recorded; 112 for EchoNet).
        shape: (C, h, w) of a latent frame (default: the VAE's, else (4, 14, 14)).
    Raises:
        DatasetError: a problem with the folder or any latent file (named), a video too
            short, values float16 cannot hold. IndexMismatchError: latents of another
            shape than the VAE's.
    """
    from echoaudit.errors import IndexMismatchError
    from echoaudit.fileio import atomic_dir, sha256_file
    from echoaudit.latents import LatentCache

    if vae is not None and vae_fingerprint is not None:
        raise ValueError("give vae or vae_fingerprint, not both")
    if shape is None:
        shape = tuple(vae.latent_shape(size)) if vae is not None else (4, 14, 14)
    shape = tuple(int(s) for s in shape)
    if vae is not None and tuple(vae.latent_shape(size)) != shape:
        raise IndexMismatchError(f"latents of shape {shape} cannot come from the VAE given: at {size} px it makes "
                                 f"{tuple(vae.latent_shape(size))}")
    fingerprint = vae.fingerprint if vae is not None else (vae_fingerprint or UNKNOWN_VAE)
    src = PublishedLatents.open(folder, shape=shape)
    n = len(src)

    def report(frac: float, msg: str) -> None:
        if progress is not None:
            progress(frac, msg)

    if frames is None:  # a first pass for the lengths (and every file's check)
        lengths = []
        for i in range(n):
            lengths.append(len(src.get(i)))
            report(0.5 * (i + 1) / n, f"checked {i + 1}/{n} latent files")
        frames = min(lengths)
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a whole number >= 1; got {frames!r}")
    frames = int(frames)
    out = Path(out)
    with atomic_dir(out) as tmp:
        lat = np.lib.format.open_memmap(tmp / "latents.npy", mode="w+", dtype=np.float16, shape=(n, frames, *shape))
        for i in range(n):
            x = src.get(i)
            if len(x) < frames:
                raise DatasetError(f"latent file {src.table['path'].iat[i]} has {len(x)} frames; the cache takes "
                                   f"{frames} per video (pass a smaller frames)")
            if float(np.abs(x[:frames]).max()) > _FLOAT16_MAX:
                raise DatasetError(f"latent file {src.table['path'].iat[i]} holds values beyond float16's range "
                                   f"(|x| > {_FLOAT16_MAX:g}); these are no scaled VAE latents")
            lat[i] = x[:frames].astype(np.float16)
            report(0.5 + 0.5 * (i + 1) / n, f"converted {i + 1}/{n} latent videos")
        lat.flush()
        del lat
        src.table.drop(columns=["path"]).to_csv(tmp / "videos.csv", index=False)
        meta = {"vae_fingerprint": fingerprint, "frames": frames, "size": int(size), "augment_seed": 0,
                "latent_shape": list(shape), "n_videos": n, "augment_copies": 0, "augment_stride": 1,
                "source": {"format": "EchoNet-Synthetic Latents", "folder": str(Path(folder).resolve()),
                           "filelist_sha256": sha256_file(Path(folder) / FILELIST)}}
        (tmp / "cache.json").write_text(json.dumps(meta, indent=2))
    return LatentCache.load(out)
