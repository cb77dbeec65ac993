"""A workspace: one run folder with its data, models, index, scores and reports, and a
manifest that records what produced what (paths, model hashes, seeds, settings).

Layout (paths in the manifest are relative to the workspace root)::

    manifest.json
    data/<name>/            EchoNet-format training data (TRAIN / VAL / TEST by patient)
    models/vae/             diffusers AutoencoderKL folder
    models/reid/            re-ID network (safetensors + config.json)
    models/generators/<g>/  latent video diffusion pipelines
    index/                  FAISS index + metadata of TRAIN frame embeddings
    synthetic/<g>/          EchoNet-format synthetic sets, one per generator
    scores/                 heldout.parquet, synthetic_<g>.parquet, temporal.parquet,
                            video_embeddings.parquet, reid_roc.parquet,
                            first_frames_<set>.parquet (set = heldout or <g>)
    reports/                HTML / PNG / CSV exports

Manifest version 3 adds ``clip`` (``{"fps", "frames"}``: the clips held-out and synthetic
videos were scored on) and ``calibration`` (the by-patient split of the held-out videos:
``calibration`` / ``check`` video lists, ``calibration_patients`` / ``check_patients``,
``seed``, ``fraction``; None with a single held-out patient). A version-2 workspace lacks
both: its threshold is calibrated on every held-out video and its false-flag rate is
"not measured". ``scores["first_frames"]`` (set -> file of each query video's first-frame
embedding, for the published conventions) is optional: workspaces built before it lack
it, and the report leaves that section out. ``data.on_missing`` (``"error"`` or
``"skip"``) and ``data.skipped`` record how the build opened its data set (``workspace
create --skip-missing``); a manifest without them was opened strictly.

``Workspace`` opens one lazily (models and the index load on first use) and is safe to
share between threads for reading: the app caches one per folder with st.cache_resource.
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from echoaudit.errors import EchoAuditError
from echoaudit.fileio import read_json

__all__ = ["Workspace", "MANIFEST", "load_manifest", "clip_source_frames"]

MANIFEST = "manifest.json"


def load_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise EchoAuditError(
            f"{Path(root)} is not an EchoAudit workspace (no {MANIFEST}); build one with "
            f"`echoaudit demo --workspace {root}` or `echoaudit workspace create`"
        )
    try:
        return read_json(path, what="workspace manifest", expect=dict, error=EchoAuditError)
    except EchoAuditError as exc:
        raise EchoAuditError(f"{exc}; rebuild the workspace") from exc


def clip_source_frames(fps: float, clip, n_frames: int | None = None) -> np.ndarray:
    """Frame numbers, in the video as stored, of the frames of its clip.

    ``conform_clip(frames, fps, clip)[j] == frames[clip_source_frames(fps, clip, T)[j]]``:
    the clip resamples to ``clip.fps`` by picking frames (``resample_indices``), then keeps
    the first ``clip.frames``. Scores and curves report these numbers, so a frame number
    always means a frame of the stored video (its time is frame / the video's FPS).

    Args:
        fps: the stored video's frame rate (> 0).
        clip: the :class:`~echoaudit.data.clips.ClipSpec`.
        n_frames: the stored video's length, if known (shorter videos give fewer frames).

    Returns:
        (min(clip.frames, resampled length),) int64.
    """
    from echoaudit.data.video import resample_indices

    if n_frames is None or n_frames < 1:  # unknown: long enough for the whole clip
        n_frames = int(np.ceil((clip.frames + 1) * float(fps) / float(clip.fps))) + 1
    return resample_indices(int(n_frames), float(fps), float(clip.fps), max_frames=clip.frames).astype(np.int64)


class Workspace:
    """An opened workspace. Attributes load on first use; none of them is mutated later."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.manifest = load_manifest(self.root)
        self._lock = threading.Lock()
        self._synthetic_lock = threading.Lock()  # not _lock: held while a query runs
        self._synthetic_sets: dict = {}

    @staticmethod
    def exists(root: str | Path) -> bool:
        return (Path(root) / MANIFEST).is_file()

    @property
    def size(self) -> int:
        """Frame side (pixels) the workspace's models take; videos are resized to it."""
        return int(self.manifest["engine"].get("size", 112))

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    # --- data ---------------------------------------------------------------------------
    @cached_property
    def dataset(self):
        """The data set the workspace was built from, opened as the build opened it: strictly,
        or, when the manifest records ``data.on_missing = "skip"`` (built with
        ``--skip-missing``), without the videos the build skipped (``data.skipped``).
        Another listed video missing now is an error, as in a strict open: the index and
        the scores were made with it."""
        from echoaudit.data.echonet import EchoNetDataset

        data = self.manifest["data"]
        on_missing = data.get("on_missing", "error")  # absent: built before the option, strict
        if on_missing not in ("error", "skip"):
            raise EchoAuditError(f"workspace manifest {self.root / MANIFEST}: data.on_missing must be 'error' or "
                                 f"'skip'; got {str(on_missing)[:80]!r}; rebuild the workspace")
        ds = EchoNetDataset.open(self.path(data["path"]), on_missing=on_missing)
        if on_missing == "error":
            return ds
        recorded = data.get("skipped", [])
        if not isinstance(recorded, list) or not all(isinstance(n, str) for n in recorded):
            raise EchoAuditError(f"workspace manifest {self.root / MANIFEST}: data.skipped must be a list of "
                                 f"FileNames; got {str(recorded)[:80]}; rebuild the workspace")
        new = ds.skipped[~ds.skipped["FileName"].isin(recorded)]
        if len(new):
            raise EchoAuditError(
                f"{len(new)} videos of the workspace's data set {ds.root} are missing or unusable now, but were "
                f"present when it was built: " + "; ".join(f"{r.FileName}: {r.reason}" for r in new.head(5).itertuples())
                + (" ..." if len(new) > 5 else "") + "; restore them or rebuild the workspace")
        back = ds.table["FileName"].isin(recorded)  # skipped by the build, present again: not in its index
        return ds if not back.any() else type(ds)(ds.root, ds.table[~back], ds.notes, ds.skipped)

    @cached_property
    def train(self):
        return self.dataset.split("TRAIN")

    @cached_property
    def heldout(self):
        return self.dataset.split(["VAL", "TEST"])

    @property
    def pending(self) -> list[str]:
        """Synthetic sets the build has still to generate (empty once complete)."""
        pending = self.manifest.get("pending", [])
        if not (isinstance(pending, list) and all(isinstance(n, str) for n in pending)):
            raise EchoAuditError(f"workspace manifest {self.root / MANIFEST}: pending must be a list of set names; "
                                 f"got {pending!r:.80}; rebuild the workspace")
        return list(pending)

    @property
    def utility_pending(self) -> list[str]:
        """Synthetic sets whose downstream EF utility the build has still to measure (the
        demo's; see :mod:`echoaudit.utility_workspace`)."""
        pending = self.manifest.get("utility_pending", [])
        if not (isinstance(pending, list) and all(isinstance(n, str) for n in pending)):
            raise EchoAuditError(f"workspace manifest {self.root / MANIFEST}: utility_pending must be a list of set "
                                 f"names; got {pending!r:.80}; rebuild the workspace")
        return list(pending)

    @property
    def complete(self) -> bool:
        return not self.pending and not self.utility_pending

    @property
    def synthetic_names(self) -> list[str]:
        return list(self.manifest.get("synthetic", {}))

    def synthetic(self, name: str):
        """The synthetic set ``name`` (an EchoNetDataset), opened and checked once per
        Workspace: opening reads the first bytes of every video (a second at 10,000
        videos), and the manifest this Workspace read names the set as it was then."""
        from echoaudit.data.echonet import EchoNetDataset

        sets = self.manifest.get("synthetic", {})
        if name not in sets:
            raise EchoAuditError(f"no synthetic set {name!r} in this workspace; it has: {', '.join(sets) or 'none'}")
        with self._synthetic_lock:
            ds = self._synthetic_sets.get(name)
            if ds is None:
                ds = self._synthetic_sets[name] = EchoNetDataset.open(self.path(sets[name]["path"]))
        return ds

    # --- models -------------------------------------------------------------------------
    @cached_property
    def vae(self):
        from echoaudit.models.vae import FrameVAE

        return FrameVAE.from_pretrained(self.path(self.manifest["models"]["vae"]["path"]))

    @cached_property
    def reid(self):
        from echoaudit.models.reid import load_reid

        return load_reid(self.path(self.manifest["models"]["reid"]["path"])).eval()

    @cached_property
    def index(self):
        from echoaudit.index import EmbeddingIndex

        return EmbeddingIndex.load(self.path(self.manifest["index"]["path"]),
                                   expected_fingerprint=self.manifest["index"]["fingerprint"])

    @cached_property
    def engine(self):
        from echoaudit.engine import AuditEngine, EngineConfig, index_vectors

        return AuditEngine(self.vae, self.reid, self.index, index_vectors(self.index), EngineConfig(**self.manifest["engine"]))

    @property
    def generator_names(self) -> list[str]:
        return list(self.manifest["models"].get("generators", {}))

    def generator_path(self, name: str) -> Path:
        gens = self.manifest["models"].get("generators", {})
        if name not in gens:
            raise EchoAuditError(f"no generator {name!r}; this workspace has: {', '.join(gens) or 'none'}")
        return self.path(gens[name]["path"])

    def models_info(self) -> pd.DataFrame:
        """One row per model: name, kind, parameters, size on disk, training figures, hash."""
        rows = []
        m = self.manifest["models"]
        for name, info in [("vae", m["vae"]), ("reid", m["reid"])] + [
                (f"generator: {g}", v) for g, v in m.get("generators", {}).items()]:
            folder = self.path(info["path"])
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
            rows.append({
                "model": name, "kind": info.get("kind", ""), "parameters": info.get("parameters"),
                "size_mb": round(size / 2**20, 2), "training": info.get("summary", ""),
                "fingerprint": info.get("sha256", "")[:12],
            })
        return pd.DataFrame(rows)

    # --- stored results -----------------------------------------------------------------
    def _table(self, key: str) -> pd.DataFrame:
        rel = self.manifest.get("scores", {}).get(key)
        if rel is None:
            raise EchoAuditError(f"this workspace has no {key!r} table yet; rebuild it with `echoaudit demo` or run `echoaudit audit`")
        if isinstance(rel, list):  # one file per set (version 2)
            return pd.concat([pd.read_parquet(self.path(r)) for r in rel], ignore_index=True)
        return pd.read_parquet(self.path(rel))

    @cached_property
    def heldout_scores(self) -> pd.DataFrame:
        return self._table("heldout")

    def synthetic_scores(self, name: str) -> pd.DataFrame:
        return self._table(f"synthetic_{name}")

    @cached_property
    def temporal(self) -> pd.DataFrame:
        return self._table("temporal")

    @cached_property
    def video_embeddings(self) -> pd.DataFrame:
        return self._table("video_embeddings")

    @cached_property
    def reid_roc(self) -> pd.DataFrame:
        return self._table("reid_roc")

    def first_frames(self, set_name: str) -> tuple[list[str], np.ndarray] | None:
        """First-frame re-ID embeddings of the query videos of ``set_name`` (``"heldout"``
        or a synthetic set's name): (names (V,), (V, D) float32), or None when the build
        stored none for it (workspaces built before they were stored)."""
        rel = (self.manifest.get("scores", {}).get("first_frames") or {}).get(set_name)
        if rel is None or not self.path(rel).is_file():
            return None
        df = pd.read_parquet(self.path(rel))
        if df.empty:
            return None
        return df["video"].astype(str).tolist(), np.stack([np.asarray(e, np.float32) for e in df["emb"]])

    def head_logits(self, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
        """(B,) float64 logits of the re-ID head on (B, D), (B, D) embedding pairs."""
        import torch

        with self._lock, torch.no_grad():  # torch modules are shared between app sessions
            z = self.reid.head_logits(torch.from_numpy(np.ascontiguousarray(e1, np.float32)),
                                      torch.from_numpy(np.ascontiguousarray(e2, np.float32)))
        return z.numpy().astype(np.float64)

    # --- calibration --------------------------------------------------------------------
    @property
    def clip_spec(self):
        """The :class:`~echoaudit.data.clips.ClipSpec` held-out (and synthetic) videos were
        scored on, or None (a version-2 workspace: clips as stored)."""
        from echoaudit.data.clips import ClipSpec

        clip = self.manifest.get("clip")
        return None if not clip else ClipSpec(fps=float(clip["fps"]), frames=int(clip["frames"]))

    @property
    def calibration_split(self):
        """The :class:`~echoaudit.audit.calibration.CalibrationSplit` of the held-out patients,
        or None (a version-2 workspace, or a single held-out patient: no check part)."""
        from echoaudit.audit.calibration import CalibrationSplit

        split = self.manifest.get("calibration")
        return None if not split else CalibrationSplit.from_dict(split)

    def calibration(self, percentile: float = 95.0, rule: str | None = None, *, n_boot: int = 500, seed: int = 0):
        """The threshold set on the calibration patients and its false-flag rate measured on
        the check patients (:func:`~echoaudit.audit.calibration.calibrate`); ``rule`` None =
        the default (held-out-to-train)."""
        from echoaudit.audit.privacy import DEFAULT_RULE
        from echoaudit.audit.calibration import calibrate

        return calibrate(self.heldout_scores, train_videos=self.train.names, heldout_videos=self.heldout.names,
                         split=self.calibration_split, rule=rule or DEFAULT_RULE, percentile=percentile,
                         clip=self.clip_spec, n_boot=n_boot, seed=seed)

    def threshold(self, percentile: float = 95.0, rule: str | None = None, *, n_boot: int = 500, seed: int = 0):
        """The :class:`~echoaudit.audit.privacy.Threshold` of :meth:`calibration`."""
        return self.calibration(percentile, rule, n_boot=n_boot, seed=seed).threshold

    # --- actions ------------------------------------------------------------------------
    def query(self, frames: np.ndarray, name: str = "upload", *, fps: float | None = None, keep_curves: bool = True):
        """Score a (T, H, W) video in [0, 1] at the model resolution against the training set.

        ``fps``: the video's frame rate. Given, and the workspace has a clip spec, the video
        is first conformed to it (``conform_clip``: the length and frame rate the threshold
        was calibrated on), and the result's frame numbers (``frames``,
        ``best_query_frame``) are mapped back to frames of ``frames`` as given
        (:func:`clip_source_frames`); None scores the frames as they are."""
        clip = self.clip_spec
        source = None
        if fps is not None and clip is not None:
            from echoaudit.data.clips import conform_clip

            source = clip_source_frames(float(fps), clip, len(frames))
            frames = conform_clip(frames, float(fps), clip)
        with self._lock:  # torch modules are shared between app sessions
            res = self.engine.score_frames(frames, name, keep_curves=keep_curves)
        if source is not None:
            res.frames = source[res.frames]
            res.per_train = res.per_train.assign(best_query_frame=source[res.per_train["best_query_frame"].to_numpy()])
        return res

    def generate(self, generator: str, *, n: int = 1, seed: int = 0, ef: float | None = None,
                 steps: int = 25, progress=None):
        """(frames uint8 (n, T, H, W), efs) from one of the workspace's generators."""
        from echoaudit.generate import generate_videos

        entry = self.manifest["models"].get("generators", {}).get(generator, {})
        cond = entry.get("conditioning")  # a published video UNet: its conditioning frames
        with self._lock:
            return generate_videos(self.generator_path(generator), self.vae, n=n, seed=seed, ef=ef,
                                   steps=steps, progress=progress,
                                   conditioning=None if not cond else self.path(cond["path"]))
