"""Hostile-input fuzzing of every reader of user files (issue 15, parts 3 and 6).

Four input families, each made by mutating small valid files that this script writes
itself (nothing is downloaded):

  video       mutated AVI (MJPEG, FFV1, raw), MP4 (H.264), GIF and NPY files, as bytes or
              as a path, read with ``load_video`` (random fps / size / num_frames /
              frame_step); and hostile frame arrays written with ``write_video``.
  filelist    FileList.csv with hostile cells, rows, columns and bytes, opened with
              ``EchoNetDataset.open`` (strict or on_missing="skip"), then a row loaded.
  json        workspace manifests (``read_json``), index records (``EmbeddingIndex.load``)
              and model config.json files (``load_reid``, ``FrameVAE.from_pretrained``)
              with hostile values (NaN, 1e400, 10**30, deep nesting, lone surrogates,
              wrong types) and mutated bytes.
  checkpoint  re-ID, VAE, generator and index folders with a planted malicious pickle
              (``pytorch_model.bin``, ``*.pkl``, ``*.pt``, ... whose unpickling creates a
              marker file), sometimes as the only weights, with mutated weights / FAISS /
              parquet files (hashes in index.json refreshed so the damage reaches them).

Every input must end in a result or an ``EchoAuditError``; an input still running after
``--timeout`` seconds counts as a hang (it runs in a worker process, which is then
replaced). The folder an input reads (and the temporary folder) must hold the same files
afterwards, and the marker file must never appear.

Mutations: bit flips, truncation, duplicated chunks, deleted chunks, overwritten and
inserted random bytes, boundary integers (0, 2**31 - 1, 2**64 - 1, ...) written over the
data, random bytes behind a valid magic number, and splices of two seeds.

Usage:
  python bench/fuzz_inputs.py --inputs 50000
  python bench/fuzz_inputs.py --inputs 3000 --families video,filelist --save-escapes /tmp/escapes

Output: one line per family (inputs, results, project errors, escaped exceptions, hangs,
files left behind, pickles run, slowest input), then the headline last.

``tests/test_fuzz.py`` drives the same ``Harness`` with hypothesis (derandomized, a few
thousand inputs) in the default test run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import io
import json
import multiprocessing as mp
import os
import pickle
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from echoaudit.errors import EchoAuditError  # noqa: E402

FAMILIES = ("video", "filelist", "json", "checkpoint")
# Share of --inputs per family: video readers see the most hostile input (uploads).
WEIGHTS = {"video": 0.5, "filelist": 0.2, "json": 0.2, "checkpoint": 0.1}


class Unsafe(AssertionError):
    """An input that ended in a result or project error but left files behind or ran a pickle."""


# --------------------------------------------------------------------------- randomness


class Rand:
    """Where choices come from: a numpy Generator (this script) or hypothesis draws
    (tests/test_fuzz.py), behind the same three methods."""

    def __init__(self, draw_int: Callable[[int, int], int], draw_bytes: Callable[[int], bytes]):
        self._int, self._bytes = draw_int, draw_bytes

    @classmethod
    def from_numpy(cls, rng: np.random.Generator) -> "Rand":
        return cls(lambda lo, hi: int(rng.integers(lo, hi + 1)), lambda n: rng.bytes(n))

    def int(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi], both included."""
        return self._int(lo, hi)

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, percent: int) -> bool:
        return self.int(0, 99) < percent

    def bytes(self, n: int) -> bytes:
        return self._bytes(n)


# Boundary values, written over the data in 1, 2, 4 or 8 bytes, either byte order.
_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1)


def mutate_bytes(data: bytes, r: Rand, *, max_ops: int = 3, gentle: bool = False, others: tuple[bytes, ...] = ()) -> bytes:
    """1..max_ops byte-level mutations of ``data``.

    ``gentle``: only bit flips, truncation and overwrites of at most 2 bytes (a model
    config whose numbers may only change by a digit or two; see the module docstring of
    tests/test_fuzz.py for why).
    """
    b = bytearray(data)
    ops = ("flip", "truncate", "overwrite") if gentle else (
        "flip", "truncate", "duplicate", "delete", "overwrite", "insert", "interesting", "random_tail", "splice")
    for _ in range(r.int(1, max_ops)):
        op = r.pick(ops)
        n = len(b)
        if op == "flip" and n:
            for _ in range(r.int(1, 8)):
                i = r.int(0, n - 1)
                b[i] ^= 1 << r.int(0, 7)
        elif op == "truncate" and n:
            b = b[: r.int(0, n - 1)]
        elif op == "duplicate" and n:
            i = r.int(0, n - 1)
            j = min(n, i + r.int(1, 256))
            at = r.int(0, n)
            b[at:at] = b[i:j]
        elif op == "delete" and n:
            i = r.int(0, n - 1)
            del b[i : i + r.int(1, 256)]
        elif op == "overwrite" and n:
            k = r.int(1, 2 if gentle else 16)
            i = r.int(0, n - 1)
            b[i : i + k] = r.bytes(k)
        elif op == "insert":
            at = r.int(0, n)
            b[at:at] = r.bytes(r.int(1, 64))
        elif op == "interesting" and n:
            width = r.pick((1, 2, 4, 8))
            value = r.pick(_INTERESTING) & ((1 << (8 * width)) - 1)
            i = r.int(0, max(0, n - width))
            b[i : i + width] = value.to_bytes(width, r.pick(("little", "big")))
        elif op == "random_tail":
            keep = min(n, 16)
            b = b[:keep] + bytearray(r.bytes(r.int(0, 1024)))
        elif op == "splice" and others:
            other = r.pick(others)
            b = b[: r.int(0, n)] + bytearray(other[r.int(0, len(other)) :])
    return bytes(b)


# Values a hostile user (or a bad editor, or a disk) puts where a number or a name goes.
HOSTILE_CELLS = (
    "", " ", "nan", "NaN", "inf", "-inf", "-1", "0", "1e400", "1e30", "9" * 400, "0x10", " 50 ", "50%",
    "clip.mp4", "v0.AVI", "../../etc/passwd", "a/b", ".hidden", "x\x00y", "tab\there", "é", "😀",
    '"quoted, comma"', "TRAIN", "train", "8", "9.0", "10", "-0", "x" * 300, "NULL", "None", "\u202e", "\ud7ff",
    "empty", "text.avi", "dir", "gone", "v0",  # an empty file, a text file, a folder, nothing, a duplicate
)
# Raw JSON text for values json.dumps cannot write (inserted by placeholder).
HOSTILE_JSON_RAW = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 30, "9" * 5000,
                    "[" * 5000 + "]" * 5000, '"\\ud800"', '"\\u0000"', "1.5e308", "-0", "0.0000001")
HOSTILE_JSON = ("x", "", [], {}, None, True, False, -1, 0, 1.5, 2**40, [1, 2, 3], {"a": None}, "../../etc")


def _json_paths(value, prefix=()):
    """Every (path) to a value inside nested dicts / lists."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _json_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json_paths(v, prefix + (i,))


def mutate_json(text: str, r: Rand, *, safe_values: tuple = HOSTILE_JSON, raw_values: tuple = HOSTILE_JSON_RAW,
                byte_chance: int = 30, gentle_bytes: bool = False, keep_root: bool = False) -> bytes:
    """Replace 1-3 values of a JSON document (any depth; the root too unless
    ``keep_root``) with hostile ones, or drop them, then maybe mutate the bytes too."""
    obj = json.loads(text)
    raws: list[str] = []
    for _ in range(r.int(1, 3)):
        paths = [p for p in _json_paths(obj) if p or not keep_root]
        if not paths:
            break
        path = r.pick(paths)
        op = r.int(0, 9)
        if op < 5 or not path:
            value = copy.deepcopy(r.pick(safe_values))
        elif op < 8 and raw_values:
            raws.append(r.pick(raw_values))
            value = f"@@RAW{len(raws) - 1}@@"
        else:
            value = "@@DROP@@"
        if not path:
            obj = value if value != "@@DROP@@" else {}
            continue
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        if value == "@@DROP@@":
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    out = json.dumps(obj, indent=2)
    for i, raw in enumerate(raws):
        out = out.replace(f'"@@RAW{i}@@"', raw)
    data = out.encode("utf-8", "surrogatepass")
    if r.chance(byte_chance):
        data = mutate_bytes(data, r, gentle=gentle_bytes)
    return data


# --------------------------------------------------------------------------- file checks


def tree(folder: Path) -> dict[str, int]:
    """Relative path -> size of every entry under ``folder`` (folders as -1)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in sorted(folder.rglob("*"))}


class _Evil:
    """Unpickling it opens (creates) the marker file: proof that a pickle was run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_pickle(path: Path, marker: Path, kind: str) -> None:
    if kind == "torch":
        import torch

        torch.save({"state_dict": _Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"weights": _Evil(marker)}, protocol=int(kind)))


PICKLE_NAMES = ("pytorch_model.bin", "diffusion_pytorch_model.bin", "model.pkl", "weights.pt", "model.ckpt",
                "checkpoint.pth", "optimizer.pt", "scheduler.pkl", "metadata.pkl", "index.pkl",
                "diffusion_pytorch_model.fp16.bin", "training_args.bin")


# --------------------------------------------------------------------------- harness


class Harness:
    """Seed files in ``workdir`` and one ``run_<family>(r)`` per family.

    ``run(family, r)`` makes one input from ``r``, runs it and returns ``"result"`` or
    ``"error"`` (an EchoAuditError); any other exception escapes to the caller, and
    :class:`Unsafe` is raised for files left behind or a pickle that ran. ``last_input``
    describes the input (bytes or text) for saving when it escapes.
    """

    def __init__(self, workdir: str | Path):
        self.work = Path(workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.tmp = self.work / "tmp"  # tempfile's folder while an input runs
        self.tmp.mkdir(exist_ok=True)
        self.marker = self.work / "PICKLE_WAS_RUN"
        self.last_input: tuple[str, bytes] = ("", b"")
        self._videos()
        self._dataset()
        self._json_seeds()
        self._checkpoints()

    # ------------------------------------------------------------ seeds

    def _videos(self) -> None:
        from echoaudit.data.video import write_video

        rng = np.random.default_rng(0)
        frames = rng.random((6, 16, 24)).astype(np.float32)
        folder = self.work / "seed_videos"
        specs = {"mjpeg.avi": None, "ffv1.avi": "ffv1", "raw.avi": "rawvideo", "h264.mp4": None, "anim.gif": None,
                 "f32.npy": None}
        self.video_seeds: dict[str, bytes] = {}
        for name, codec in specs.items():
            self.video_seeds[name] = write_video(folder / name, frames, 25, codec=codec).read_bytes()
        for name, arr in (("u8.npy", (frames * 255).astype(np.uint8)),
                          ("rgb.npy", np.repeat((frames * 255).astype(np.uint8)[..., None], 3, axis=-1))):
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            self.video_seeds[name] = buf.getvalue()
        self.inbox = self.work / "inbox"  # uploads as paths
        self.inbox.mkdir(exist_ok=True)
        self.outbox = self.work / "outbox"  # write_video targets
        self.outbox.mkdir(exist_ok=True)

    def _dataset(self) -> None:
        from echoaudit.data.video import write_video

        self.ds = self.work / "dataset"
        videos = self.ds / "Videos"
        videos.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(1)
        for name in ("v0.avi", "v1.avi", "v2.avi", "v3.avi", "clip.mp4", "anim.gif", "arr.npy", "Upper.AVI"):
            write_video(videos / name, rng.random((4, 16, 16)).astype(np.float32), 25)
        (videos / "empty.avi").write_bytes(b"")
        (videos / "text.avi").write_text("not a video\n")
        (videos / "dir.avi").mkdir(exist_ok=True)
        header = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split",
                  "PatientID", "View", "Age"]
        names = ["v0", "v1.avi", "v2", "v3", "clip.mp4", "anim.gif", "arr.npy", "Upper.AVI"]
        splits = ["TRAIN", "TRAIN", "VAL", "TEST", "TRAIN", "VAL", "TEST", "TEST"]
        self.filelist_seed = [header] + [
            [n, f"{40 + 3 * k}.5", "30", "80", "16", "16", "25", "4", s, f"P{min(k, 1)}" if k < 2 else f"P{k}", "A4C", str(k)]
            for k, (n, s) in enumerate(zip(names, splits))
        ]

    def _json_seeds(self) -> None:
        self.manifest_seed = json.dumps({
            "version": 3,
            "data": {"path": "data/a4c", "sha256": "ab" * 32},
            "models": {"vae": {"path": "models/vae", "sha256": "cd" * 32, "parameters": 1054789, "kind": "vae"},
                       "reid": {"path": "models/reid", "sha256": "ef" * 32},
                       "generators": {"regular": {"path": "models/generators/regular", "sha256": "01" * 32}}},
            "engine": {"batch_size": 512, "frame_stride": 4, "index_stride": 8, "k": 32, "size": 112,
                       "robust_top": 0.1},
            "index": {"path": "index", "fingerprint": {"vae": "cd" * 32, "reid": "ef" * 32, "embed_dim": 128}},
            "clip": {"fps": 25.0, "frames": 32},
            "calibration": {"calibration": ["PHA4C_0002_00", "PHA4C_0002_01"], "check": ["PHA4C_0003_00"],
                            "seed": 0, "fraction": 0.5},
            "scores": {"heldout": "scores/heldout.parquet", "synthetic_regular": "scores/synthetic_regular.parquet"},
            "synthetic": {"regular": {"path": "synthetic/regular"}},
            "pending": [],
        }, indent=2)

    def _checkpoints(self) -> None:
        import pandas as pd
        import torch

        from echoaudit.index import EmbeddingIndex, IndexConfig
        from echoaudit.models.diffusion import EchoVideoPipeline, build_unet, sampling_scheduler
        from echoaudit.models.reid import ReIDNet
        from echoaudit.models.vae import build_vae

        torch.manual_seed(0)
        seeds = self.work / "seed_checkpoints"
        self.ckpt: dict[str, Path] = {"reid": seeds / "reid", "vae": seeds / "vae", "generator": seeds / "generator",
                                      "index": seeds / "index"}
        if not (seeds / "done").exists():
            ReIDNet(width=8, embed_dim=8, head_hidden=8).save_pretrained(self.ckpt["reid"])
            build_vae((8, 8, 8, 8), sample_size=32).save_pretrained(self.ckpt["vae"])
            unet = build_unet((32, 32), sample_size=8, num_frames=4)
            EchoVideoPipeline(unet.eval(), sampling_scheduler(), num_frames=4).save_pretrained(self.ckpt["generator"])
            x = np.random.default_rng(2).normal(size=(48, 8))
            meta = pd.DataFrame({"video": [f"v{i // 4}" for i in range(48)], "frame": np.arange(48) % 4})
            EmbeddingIndex.build(x, meta, fingerprint={"reid": "ef" * 8}, config=IndexConfig(kind="flat")).save(
                self.ckpt["index"])
            (seeds / "done").write_text("")
        self.cases = self.work / "cases"

    # ------------------------------------------------------------ running one input

    @contextlib.contextmanager
    def _guard(self, folders: list[Path]):
        """Temporary files go to self.tmp; afterwards it, and ``folders``, must hold what
        they held before, and the marker must not exist. Opening a network connection
        (a config that sends a loader to the Hugging Face Hub) is refused and reported."""
        before = {f: tree(f) for f in folders}
        saved, tempfile.tempdir = tempfile.tempdir, str(self.tmp)
        self.marker.unlink(missing_ok=True)
        network: list[str] = []

        def no_network(host, *args, **kwargs):
            network.append(str(host))
            raise Unsafe(f"reading a local file tried to reach the network ({host})")

        saved_net = socket.getaddrinfo, socket.create_connection
        socket.getaddrinfo = socket.create_connection = no_network
        try:
            yield
        finally:
            socket.getaddrinfo, socket.create_connection = saved_net
            tempfile.tempdir = saved
            if network:
                raise Unsafe(f"reading a local file tried to reach the network ({network[0]})")
            ran = self.marker.exists()
            self.marker.unlink(missing_ok=True)
            left = {str(f): sorted(set(tree(f)) ^ set(before[f])) for f in folders if tree(f) != before[f]}
            left.update({"tmp": sorted(tree(self.tmp))} if tree(self.tmp) else {})
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(exist_ok=True)
            if ran:
                raise Unsafe(f"a planted pickle was unpickled (marker {self.marker} created)")
            if left:
                raise Unsafe(f"files left behind or changed: {left}")

    def run(self, family: str, r: Rand) -> str:
        return getattr(self, f"run_{family}")(r)

    @staticmethod
    def _outcome(fn: Callable[[], object]) -> str:
        try:
            fn()
        except EchoAuditError:
            return "error"
        return "result"

    # ------------------------------------------------------------ video

    def run_video(self, r: Rand) -> str:
        if r.chance(10):
            return self._run_write(r)
        from echoaudit.data.video import load_video

        name = r.pick(sorted(self.video_seeds))
        others = tuple(self.video_seeds.values())
        data = mutate_bytes(self.video_seeds[name], r, others=others)
        ext = Path(name).suffix if r.chance(90) else r.pick((".avi", ".mp4", ".gif", ".npy", ".mov", "avi"))
        kwargs = {}
        if r.chance(30):
            kwargs["fps"] = r.pick((25.0, 50.0, 12.5, 0.5, 1e6))
        if r.chance(20):
            kwargs["size"] = r.pick((8, (8, 12), 16))
        if r.chance(20):
            kwargs["num_frames"] = r.pick((1, 2, 5))
        if r.chance(20):
            kwargs["frame_step"] = r.pick((2, 3))
        as_path = r.chance(30)
        self.last_input = (f"video {name} as {ext} {kwargs}", data)
        with self._guard([self.inbox]):
            if not as_path:
                return self._outcome(lambda: load_video(data, extension=ext, **kwargs))
            path = self.inbox / f"upload{ext if ext.startswith('.') else '.' + ext}"
            path.write_bytes(data)
            try:
                return self._outcome(lambda: load_video(path, **kwargs))
            finally:
                path.unlink()

    def _run_write(self, r: Rand) -> str:
        from echoaudit.data.video import write_video

        shape = r.pick(((3, 8, 8), (2, 8, 12), (0, 8, 8), (3, 8), (2, 4, 4, 3), (3, 9, 7), (2, 1, 1)))
        dtype = r.pick(("uint8", "float32", "float64", "int16", "bool", "object"))
        frames = np.full(shape, 0.5).astype(dtype) if dtype != "uint8" else np.full(shape, 128, np.uint8)
        if dtype.startswith("float") and frames.size and r.chance(30):
            frames.flat[r.int(0, frames.size - 1)] = r.pick((np.nan, np.inf, -1.0, 2.0))
        ext = r.pick((".avi", ".mp4", ".gif", ".npy", ".mov"))
        fps = r.pick((25.0, 0.0, -1.0, float("nan"), float("inf"), 1e9, 0.01))
        codec = r.pick((None, None, "ffv1", "libx264", "bogus"))
        self.last_input = (f"write_video {shape} {dtype} {ext} fps={fps} codec={codec}", b"")
        target = self.outbox / f"w{ext}"
        with self._guard([]):
            outcome = self._outcome(lambda: write_video(target, frames, fps, codec=codec))
        # A refused write leaves nothing; a finished one leaves exactly the target.
        left = sorted(p.name for p in self.outbox.iterdir())
        shutil.rmtree(self.outbox)
        self.outbox.mkdir()
        if left != ([target.name] if outcome == "result" else []):
            raise Unsafe(f"write_video ({outcome}) left {left} in the target folder")
        return outcome

    # ------------------------------------------------------------ filelist

    def run_filelist(self, r: Rand) -> str:
        from echoaudit.data.echonet import EchoNetDataset

        rows = [list(row) for row in self.filelist_seed]
        for _ in range(r.int(0, 3)):
            op = r.int(0, 9)
            if op < 5:  # a hostile cell
                row = rows[r.int(0, len(rows) - 1)]
                if row:
                    row[r.int(0, len(row) - 1)] = r.pick(HOSTILE_CELLS)
            elif op == 5 and len(rows) > 1:
                del rows[r.int(1, len(rows) - 1)]
            elif op == 6:
                rows.append(list(rows[r.int(1, len(rows) - 1)] if len(rows) > 1 else []))
            elif op == 7:
                col = r.int(0, len(rows[0]))
                for row in rows:
                    row.insert(col, r.pick(HOSTILE_CELLS))
            elif op == 8 and rows[0]:
                col = r.int(0, len(rows[0]) - 1)
                for row in rows:
                    if col < len(row):
                        del row[col]
            else:
                rows.insert(1, [r.pick(HOSTILE_CELLS) for _ in range(r.int(0, 14))])
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        data = buf.getvalue().encode("utf-8", "surrogatepass")
        if r.chance(30):
            data = mutate_bytes(data, r)
        on_missing = r.pick(("error", "skip"))
        check_files = r.chance(85)
        split = r.pick((None, None, "TRAIN", "test", ["VAL", "TEST"], "BOGUS"))
        load = r.chance(50)
        self.last_input = (f"filelist on_missing={on_missing} check_files={check_files} split={split}", data)
        (self.ds / "FileList.csv").write_bytes(data)
        with self._guard([self.ds / "Videos"]):
            def go():
                ds = EchoNetDataset.open(self.ds, on_missing=on_missing, check_files=check_files, split=split)
                if load and len(ds):
                    ds.load(0, num_frames=2)
            return self._outcome(go)

    # ------------------------------------------------------------ json

    def run_json(self, r: Rand) -> str:
        target = r.pick(("manifest", "manifest", "index", "reid_config", "vae_config"))
        if target == "manifest":
            from echoaudit.fileio import read_json

            data = mutate_json(self.manifest_seed, r)
            path = self.inbox / "manifest.json"
            path.write_bytes(data)
            self.last_input = ("json manifest", data)
            try:
                with self._guard([self.inbox]):
                    return self._outcome(lambda: read_json(path, what="workspace manifest"))
            finally:
                path.unlink()
        if target == "index":
            folder = self._case_copy("index")
            record = folder / "index.json"
            data = mutate_json(record.read_text(), r)
            record.write_bytes(data)
            self.last_input = ("json index.json", data)
            return self._load_folder("index", folder)
        kind = target.split("_")[0]
        folder = self._case_copy(kind)
        config = folder / "config.json"
        # Model configs get only values that cannot make a model of gigabytes (see
        # tests/test_fuzz.py): wrong types, NaN / inf, negatives and sizes no allocator
        # grants (2**40 channels fails at once). For the VAE, whose block counts loop,
        # bytes change by at most two digits.
        # The root stays an object here: a config.json that is a bare string sends diffusers
        # to the Hub for a model of that name (tests/test_fuzz.py has that case on its own).
        if kind == "reid":
            data = mutate_json(config.read_text(), r, raw_values=("NaN", "Infinity", "1e400", "-1", "1" + "0" * 30),
                               gentle_bytes=True, keep_root=True)
        else:
            data = mutate_bytes(config.read_bytes(), r, gentle=True)
        config.write_bytes(data)
        self.last_input = (f"json {kind} config.json", data)
        return self._load_folder(kind, folder)

    # ------------------------------------------------------------ checkpoint folders

    def _case_copy(self, kind: str) -> Path:
        shutil.rmtree(self.cases, ignore_errors=True)
        folder = self.cases / kind
        shutil.copytree(self.ckpt[kind], folder)
        return folder

    def _load_folder(self, kind: str, folder: Path) -> str:
        with self._guard([folder]):
            if kind == "reid":
                from echoaudit.models.reid import load_reid

                return self._outcome(lambda: load_reid(folder))
            if kind == "vae":
                from echoaudit.models.vae import FrameVAE

                return self._outcome(lambda: FrameVAE.from_pretrained(folder))
            if kind == "generator":
                from echoaudit.models.diffusion import EchoVideoPipeline

                return self._outcome(lambda: EchoVideoPipeline.from_folder(folder))
            from echoaudit.index import EmbeddingIndex

            def go():
                index = EmbeddingIndex.load(folder, expected_fingerprint={"reid": "ef" * 8})
                index.search(np.ones((2, index.dim)), 3)
            return self._outcome(go)

    def run_checkpoint(self, r: Rand) -> str:
        from echoaudit.fileio import sha256_file

        kind = r.pick(("reid", "reid", "vae", "vae", "index", "index", "generator"))
        folder = self._case_copy(kind)
        subdirs = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
        planted = []
        for _ in range(r.int(1, 2)):
            where = r.pick(subdirs) / r.pick(PICKLE_NAMES)
            plant_pickle(where, self.marker, r.pick(("torch", "2", "4", "5")))
            planted.append(str(where.relative_to(folder)))
        weights = sorted(folder.rglob("*.safetensors")) + sorted(folder.glob("index.faiss")) + sorted(
            folder.glob("metadata.parquet"))
        damaged = []
        if weights and r.chance(30) and kind != "index":  # the planted file is the only weights
            victim = r.pick(weights)
            victim.unlink()
            damaged.append(f"removed {victim.name}")
        elif weights and r.chance(60):
            victim = r.pick(weights)
            victim.write_bytes(mutate_bytes(victim.read_bytes(), r))
            damaged.append(f"mutated {victim.name}")
            if kind == "index" and r.chance(60):  # let the damage reach FAISS / pyarrow
                info = json.loads((folder / "index.json").read_text())
                info["files"][victim.name] = {"bytes": victim.stat().st_size, "sha256": sha256_file(victim)}
                (folder / "index.json").write_text(json.dumps(info))
                damaged.append("hashes refreshed")
        self.last_input = (f"checkpoint {kind} planted {planted} {damaged}", b"")
        return self._load_folder(kind, folder)


# --------------------------------------------------------------------------- the long run


def _worker(workdir: str, conn, family: str, seed: int, start: int, stop: int, save: str | None) -> None:
    """Run inputs start..stop-1 of ``family``; report each as (i, outcome, seconds, detail)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import warnings

    warnings.filterwarnings("ignore")
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity(dlogging.CRITICAL)  # "weights not found" is what we test, not news
    dlogging.disable_progress_bar()
    harness = Harness(workdir)
    for i in range(start, stop):
        conn.send(("start", i))
        rng = np.random.default_rng([seed, FAMILIES.index(family), i])
        t = time.perf_counter()
        try:
            outcome, detail = harness.run(family, Rand.from_numpy(rng)), ""
        except Unsafe as e:
            outcome, detail = "unsafe", str(e)[:300]
        except Exception as e:  # exactly what this benchmark counts
            outcome, detail = "escaped", f"{type(e).__name__}: {str(e)[:200]}"
        if save and outcome in ("escaped", "unsafe"):
            out = Path(save)
            out.mkdir(parents=True, exist_ok=True)
            label, data = harness.last_input
            (out / f"{family}_{i}.bin").write_bytes(data)
            (out / f"{family}_{i}.txt").write_text(f"{label}\n{detail}\n")
        conn.send(("done", i, outcome, time.perf_counter() - t, detail))
    conn.send(("finished",))


def run_family(family: str, n: int, *, seed: int, timeout: float, workdir: Path, save: str | None) -> dict:
    """Run n inputs in a worker process; a silent worker past ``timeout`` is a hang."""
    stats: Counter = Counter()
    slowest, examples = 0.0, {}
    i = 0
    ctx = mp.get_context("spawn")  # a fresh interpreter: no state shared with this one
    while i < n:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(str(workdir), child, family, seed, i, n, save), daemon=True)
        proc.start()
        child.close()  # only the worker holds this end now: its death reads as EOF here
        current, started = None, time.monotonic()
        setup_deadline = 600.0  # importing torch / diffusers and writing the seeds
        while True:
            limit = timeout if current is not None else setup_deadline
            if parent.poll(max(0.0, limit - (time.monotonic() - started))):
                try:
                    msg = parent.recv()
                except EOFError:
                    msg = ("crashed",)
            else:
                msg = ("hang",)
            if msg[0] == "start":
                current, started = msg[1], time.monotonic()
            elif msg[0] == "done":
                _, idx, outcome, seconds, detail = msg
                stats[outcome] += 1
                slowest = max(slowest, seconds)
                if detail and outcome not in examples:
                    examples[outcome] = f"input {idx}: {detail}"
                current, i = None, idx + 1
            elif msg[0] == "finished":
                i = n
                break
            else:  # a hang, or the worker died (a crash in C code)
                proc.kill()
                if current is None and msg[0] == "hang":
                    raise RuntimeError(f"the {family} worker did not start within {setup_deadline:.0f} s")
                stats["hang" if msg[0] == "hang" else "crashed"] += 1
                examples.setdefault(msg[0], f"input {current}")
                i = (current if current is not None else i) + 1
                break
        proc.join(timeout=10)
    return {"stats": stats, "slowest": slowest, "examples": examples}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=50_000, help="total inputs, split over the families")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated subset of {FAMILIES}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds one input may take before it is a hang")
    ap.add_argument("--save-escapes", default=None, help="folder to write escaping / unsafe inputs into")
    args = ap.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or args.inputs < 1:
        ap.error(f"unknown families {unknown} (choose from {FAMILIES}) or --inputs < 1")
    total_weight = sum(WEIGHTS[f] for f in families)
    counts = {f: max(1, round(args.inputs * WEIGHTS[f] / total_weight)) for f in families}
    t0 = time.perf_counter()
    totals: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="echoaudit-fuzz-") as work:
        for family in families:
            t = time.perf_counter()
            res = run_family(family, counts[family], seed=args.seed, timeout=args.timeout,
                             workdir=Path(work), save=args.save_escapes)
            s = res["stats"]
            totals.update(s)
            print(f"{family:10s} inputs {sum(s.values()):6d}  results {s['result']:6d}  project errors {s['error']:6d}  "
                  f"escaped {s['escaped']:3d}  hangs {s['hang']:3d}  crashes {s['crashed']:3d}  "
                  f"unsafe (files left / pickle run) {s['unsafe']:3d}  slowest {res['slowest']:.2f} s  "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
            for outcome, text in res["examples"].items():
                print(f"    first {outcome}: {text}", flush=True)
    bad = totals["escaped"] + totals["hang"] + totals["crashed"] + totals["unsafe"]
    n = sum(totals.values())
    print(f"headline: {n} hostile inputs in {time.perf_counter() - t0:.0f} s: {totals['result']} results, "
          f"{totals['error']} project errors, {totals['escaped']} escaped exceptions, {totals['hang']} hangs, "
          f"{totals['crashed']} crashes, {totals['unsafe']} unsafe (files left behind or a pickle run) "
          f"-> {'PASS' if bad == 0 else 'FAIL'}")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
