"""The FAISS embedding index: vectors of frames/videos plus one metadata row per vector,
searched by inner product, saved atomically with a fingerprint of what built it.

Layout of a saved index folder (the folder belongs to the index; ``save`` replaces it whole)::

    index.faiss       the FAISS index (always the CPU form, also when searched on a GPU)
    metadata.parquet  one row per vector, row i describes vector id i
    index.json        format, kind, resolved parameters, config, fingerprint, dim, ntotal,
                      and the size + sha256 of the two files above (corruption check)

Backends follow the FiftyOne-brain pattern: a tiny private interface (``_Backend``: make an
empty FAISS index, set its search parameters) and a registry by name (``BACKENDS``);
``IndexConfig(kind=...)`` with an unknown name lists the choices.

Scores: the index normalises stored and query vectors itself, then ranks by inner product.
``metric="ip"`` applies :func:`l2_normalize`, so the score is the cosine similarity;
``metric="pearson"`` applies :func:`center_normalize`, so the score is the Pearson
correlation (the EchoNet-Synthetic scorer). Both normalisations are idempotent: vectors
normalised beforehand give the same result.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ClassVar

import faiss
import numpy as np
import pandas as pd
from tqdm import tqdm

from .errors import CheckpointError, EchoAuditError, IndexMismatchError
from .fileio import atomic_dir, read_json, sha256_file, write_json

__all__ = [
    "IndexConfig",
    "EmbeddingIndex",
    "BACKENDS",
    "METRICS",
    "AUTO_FLAT_MAX",
    "AUTO_RECALL",
    "build_index_resumable",
    "measure_recall",
    "open_partial",
    "write_chunk",
    "center_normalize",
    "l2_normalize",
]

FORMAT_VERSION = 1
# Beyond this many vectors ``kind="auto"`` builds IVF. One 8-frame query searched exactly
# takes 17 ms at 164k x 128 and 38 ms at 328k on two cores (an EchoNet-size index), and the
# engine's shortlist may search several times a query; IVF answers in 1.5-2 ms with recall
# 0.999+ (bench/echonet_scale.py). Below it exact search costs about as much as IVF.
AUTO_FLAT_MAX = 100_000
# An IVF index that ``auto`` chooses visits more cells (nprobe doubled) until its recall@k,
# measured on its own vectors at build time (``EmbeddingIndex.recall``), reaches this.
AUTO_RECALL = 0.99
RECALL_QUERIES = 512
RECALL_K = 32
# Videos a chunk of the resumable index build (and of the Ray path's embedding jobs).
CHUNK = 64
METRICS = ("ip", "pearson")
_FILES = ("index.faiss", "metadata.parquet", "index.json")
# The stored vectors as a plain .npy beside the index (written since issue 16; an older
# index has none): ``vectors`` memory-maps them instead of copying them out of FAISS, so
# the engine, the Pearson scorer and every Ray actor on a machine share one copy in the
# page cache.
_VECTORS = "vectors.npy"
_PARTIAL = "partial"
_FIX = "rebuild the index with `echoaudit index ...`"
# GPU FAISS answers at most this many neighbours per query; larger k is searched on the CPU.
_GPU_MAX_K = 2048


# --------------------------------------------------------------------------- vectors


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm: ``x_i / ||x_i||``.

    Args:
        x: (N, D) or (D,) array, any real dtype.
    Returns:
        float32 array of the same shape. All-zero rows stay zero (their inner product with
        anything is 0), instead of turning into NaN.
    """
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def center_normalize(x: np.ndarray) -> np.ndarray:
    """Rows centred on their own mean, then L2-normalised: ``(x_i - mean(x_i)) / ||x_i - mean(x_i)||``.

    The Pearson correlation of two vectors is the inner product of their centred,
    L2-normalised versions::

        r(a, b) = sum_j (a_j - a_mean)(b_j - b_mean) / (||a - a_mean|| ||b - b_mean||)
                = <center_normalize(a), center_normalize(b)>

    so an exact FAISS inner-product search (``kind="flat"``) over centre-normalised vectors
    returns, for each query, the training vectors of maximum Pearson correlation: the
    scorer of the published EchoNet-Synthetic privacy filter (max correlation of re-ID
    features), computed by a nearest-neighbour search instead of a full N x M matrix.

    Args:
        x: (N, D) or (D,) array, any real dtype; D >= 2.
    Returns:
        float32 array of the same shape. Constant rows (correlation undefined; np.corrcoef
        gives NaN) become all-zero rows, i.e. correlation 0 with everything.
    """
    x = np.asarray(x, dtype=np.float32)
    # Centre in float64: float32 centring of large-offset features loses digits.
    centred = (x - x.mean(axis=-1, keepdims=True, dtype=np.float64)).astype(np.float32)
    return l2_normalize(centred)


_PREPROCESS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ip": l2_normalize,
    "pearson": center_normalize,
}


def _check_matrix(x, name: str, dim: int | None = None) -> np.ndarray:
    """(N, D) finite float32 array, or an error naming what was received."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        hint = " (one vector: pass x.reshape(1, -1))" if arr.ndim == 1 else ""
        raise EchoAuditError(f"{name} must be a 2-D array (N, D); got shape {arr.shape}{hint}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise EchoAuditError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if arr.shape[1] < 1:
        raise EchoAuditError(f"{name} must have at least one column; got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise IndexMismatchError(
            f"{name} have dimension {arr.shape[1]} but the index holds {dim}-d vectors: "
            f"embed them with the model the index was built from, or {_FIX}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise EchoAuditError(
            f"{name} contain NaN or infinite values in {rows.size} row(s), first rows "
            f"{rows[:5].tolist()}; only finite values are allowed"
        )
    return arr


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class IndexConfig:
    """How to index. ``kind="auto"``: exact ``flat`` up to ``AUTO_FLAT_MAX`` (100,000)
    vectors, ``ivf`` beyond, with ``nprobe`` raised until the recall@32 measured on the
    indexed vectors reaches ``AUTO_RECALL`` (0.99; see ``EmbeddingIndex.recall``).

    Attributes:
        kind: "auto" or a name in ``BACKENDS`` ("flat": exact; "ivf": inverted lists over
            k-means cells; "hnsw": graph).
        metric: "ip": inner product of L2-normalised vectors (= cosine); "pearson": of
            centred, L2-normalised vectors (= Pearson correlation). The index normalises.
        nlist: IVF cells; None = 4 * sqrt(N), at most N // 39 (k-means wants >= 39 points a cell).
        nprobe: IVF cells visited per query; None = min(nlist, 32).
        hnsw_m: HNSW neighbours per node.
        ef_construction: HNSW build beam width.
        ef_search: HNSW search beam width (raised to k when k is larger).
        seed: IVF training seed (training sample and k-means initialisation).
        gpu: None = use GPU FAISS when ``faiss.get_num_gpus() > 0`` (flat and ivf only);
            False = CPU always; True = require a GPU.
    """

    kind: str = "auto"
    metric: str = "ip"
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    seed: int = 0
    gpu: bool | None = None

    def __post_init__(self):
        choices = ["auto", *sorted(BACKENDS)]
        if self.kind not in choices:
            raise EchoAuditError(f"unknown index kind {self.kind!r}; choose one of: {', '.join(choices)}")
        if self.metric not in METRICS:
            raise EchoAuditError(f"unknown metric {self.metric!r}; choose one of: {', '.join(METRICS)}")
        for name in ("nlist", "nprobe"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise EchoAuditError(f"{name} must be a positive integer or None; got {value!r}")
        for name, low in (("hnsw_m", 2), ("ef_construction", 1), ("ef_search", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise EchoAuditError(f"{name} must be an integer >= {low}; got {value!r}")
        if self.gpu is True and faiss.get_num_gpus() == 0:
            raise EchoAuditError("gpu=True but FAISS sees no GPU (faiss-cpu installed, or no CUDA device); use gpu=None")

    def resolved_kind(self, n: int) -> str:
        """The backend name used for ``n`` vectors."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= AUTO_FLAT_MAX else "ivf"

    def use_gpu(self, kind: str) -> bool:
        if self.gpu is False or not BACKENDS[kind].gpu_capable:
            return False
        return faiss.get_num_gpus() > 0


# --------------------------------------------------------------------------- backends


class _Backend:
    """Private hooks of one index kind. ``make`` returns an empty CPU index (and the
    resolved parameters to record); ``prepare`` sets the default search parameters once;
    ``search_params`` gives per-call overrides (passed to FAISS, never stored on the
    shared index, so concurrent searches from the app do not race)."""

    name: ClassVar[str]
    gpu_capable: ClassVar[bool] = False

    @staticmethod
    def make(dim: int, n: int, config: IndexConfig) -> tuple[faiss.Index, dict]:
        raise NotImplementedError

    @staticmethod
    def train(index: faiss.Index, x: np.ndarray, params: dict, config: IndexConfig) -> None:
        """Train on (a sample of) the vectors; no-op for kinds that need no training."""

    @staticmethod
    def prepare(index: faiss.Index, params: dict) -> None:
        """Set the default search parameters on a CPU or GPU index."""

    @staticmethod
    def search_params(params: dict, k: int) -> faiss.SearchParameters | None:
        """Parameters for one search of k neighbours, or None for the defaults."""
        return None


BACKENDS: dict[str, type[_Backend]] = {}


def _register(cls: type[_Backend]) -> type[_Backend]:
    BACKENDS[cls.name] = cls
    return cls


@_register
class _Flat(_Backend):
    name = "flat"
    gpu_capable = True

    @staticmethod
    def make(dim, n, config):
        return faiss.IndexFlatIP(dim), {}


@_register
class _IVF(_Backend):
    name = "ivf"
    gpu_capable = True

    @staticmethod
    def make(dim, n, config):
        nlist = config.nlist or max(1, min(round(4 * math.sqrt(n)), n // 39))
        if nlist > n:
            raise EchoAuditError(f"nlist={nlist} exceeds the number of vectors ({n}); use nlist <= {n} or kind='flat'")
        nprobe = min(nlist, config.nprobe or 32)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = config.seed
        index.cp.spherical = True  # centroids on the unit sphere suit inner-product cells
        # We subsample ourselves (seeded); stop FAISS from subsampling again or printing
        # its "please provide at least 39*K points" warning to stderr.
        index.cp.min_points_per_centroid = 1
        index.cp.max_points_per_centroid = 1 << 30
        return index, {"nlist": nlist, "nprobe": nprobe}

    @staticmethod
    def train(index, x, params, config):
        # 50 points a cell is plenty for k-means and bounds training time at large N.
        n_train = min(len(x), 50 * params["nlist"])
        if n_train < len(x):
            rows = np.sort(np.random.default_rng(config.seed).choice(len(x), n_train, replace=False))
            x = x[rows]
        index.train(x)

    @staticmethod
    def prepare(index, params):
        index.nprobe = params["nprobe"]


@_register
class _HNSW(_Backend):
    name = "hnsw"

    @staticmethod
    def make(dim, n, config):
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        return index, {"hnsw_m": config.hnsw_m, "ef_construction": config.ef_construction,
                       "ef_search": config.ef_search}

    @staticmethod
    def prepare(index, params):
        index.hnsw.efSearch = params["ef_search"]

    @staticmethod
    def search_params(params, k):
        # The beam must hold at least k candidates to return k good neighbours.
        return faiss.SearchParametersHNSW(efSearch=k) if k > params["ef_search"] else None


def _to_gpu(index: faiss.Index) -> faiss.Index:
    res = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(res, 0, index)
    gpu._echoaudit_res = res  # keep the resources alive as long as the index
    return gpu


# --------------------------------------------------------------------------- index


def _normalize_fingerprint(fp: dict) -> dict:
    """The form a fingerprint has after a JSON round trip (tuples -> lists, keys -> str)."""
    if not isinstance(fp, dict):
        raise EchoAuditError(f"fingerprint must be a dict (e.g. {{'reid': sha256}}); got {type(fp).__name__}")
    return json.loads(json.dumps(fp, sort_keys=True, default=str))


def _fingerprint_diff(expected: dict, found: dict) -> list[str]:
    """One line per key of ``expected`` whose value differs in ``found``."""
    lines = []
    for key in sorted(expected):
        want, have = expected[key], found.get(key, "<missing>")
        if want != have:
            lines.append(f"  {key}: index built with {have!r}, expected {want!r}")
    return lines


class EmbeddingIndex:
    """A FAISS index of ``ntotal`` vectors of dimension ``dim`` plus their metadata.

    Attributes:
        dim: vector dimension D.
        ntotal: number of vectors N; vector ids are 0..N-1.
        metadata: pd.DataFrame with N rows (RangeIndex), row i describes vector id i
            (e.g. video, patient, frame, split, ef, view: whatever the caller gave).
        fingerprint: what the vectors were made from, e.g. {"vae": sha, "reid": sha,
            "data": sha, "embed_dim": 128}; ``load`` checks it.
        config: the IndexConfig it was built with.
        kind: the backend actually used ("flat", "ivf", "hnsw"; never "auto").
        params: resolved backend parameters (e.g. nlist, nprobe).
        recall: for an approximate kind, its recall@k measured at build time (``measure_recall``:
            {"k", "queries", "seed", "recall"}); None for flat (exact) or an index saved
            before recall was recorded.
    """

    def __init__(self, cpu_index: faiss.Index, metadata: pd.DataFrame, *, fingerprint: dict,
                 config: IndexConfig, kind: str, params: dict, recall: dict | None = None):
        self._cpu = cpu_index
        self._gpu = _to_gpu(cpu_index) if config.use_gpu(kind) else None
        for index in (self._cpu, self._gpu):
            if index is not None:
                BACKENDS[kind].prepare(index, params)
        self.metadata = metadata
        self.fingerprint = fingerprint
        self.config = config
        self.kind = kind
        self.params = params
        self.recall = recall
        self._vectors_path: Path | None = None  # set by ``load`` when the folder has vectors.npy

    def vectors(self) -> np.ndarray:
        """(N, D) float32: the stored vectors (normalised by the metric), row i = id i.
        Memory-mapped read-only from the folder's vectors.npy when the index was loaded from
        one; otherwise copied out of FAISS (IVF builds its direct map for that)."""
        if self._vectors_path is not None:
            return np.load(self._vectors_path, mmap_mode="r", allow_pickle=False)
        raw = self._cpu
        try:
            faiss.extract_index_ivf(raw).make_direct_map()
        except RuntimeError:
            pass  # not an IVF index: flat and HNSW reconstruct directly
        return raw.reconstruct_n(0, raw.ntotal).astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self._cpu.d)

    @property
    def ntotal(self) -> int:
        return int(self._cpu.ntotal)

    @property
    def on_gpu(self) -> bool:
        return self._gpu is not None

    def __repr__(self) -> str:
        where = "gpu" if self.on_gpu else "cpu"
        return (f"EmbeddingIndex(kind={self.kind!r}, metric={self.config.metric!r}, dim={self.dim}, "
                f"ntotal={self.ntotal}, {where})")

    @classmethod
    def build(cls, embeddings: np.ndarray, metadata: pd.DataFrame, *, fingerprint: dict,
              config: IndexConfig = IndexConfig()) -> "EmbeddingIndex":
        """Index ``embeddings``.

        Args:
            embeddings: (N, D) real array, N >= 1, finite; stored as float32 after the
                metric's normalisation (see module docstring).
            metadata: N rows, one per vector in the same order; its index is reset.
            fingerprint: JSON-serialisable dict of what made the vectors.
            config: backend choice and parameters.
        Raises:
            EchoAuditError: non 2-D, empty, NaN/inf embeddings; metadata of another length.
        """
        x = _check_matrix(embeddings, "embeddings")
        if len(x) == 0:
            raise EchoAuditError("embeddings are empty (0 rows); need at least one vector to index")
        if not isinstance(metadata, pd.DataFrame):
            raise EchoAuditError(f"metadata must be a pandas DataFrame; got {type(metadata).__name__}")
        if len(metadata) != len(x):
            raise EchoAuditError(
                f"metadata has {len(metadata)} rows but there are {len(x)} embeddings; need one row per vector"
            )
        fingerprint = _normalize_fingerprint(fingerprint)
        x = _PREPROCESS[config.metric](x)
        kind = config.resolved_kind(len(x))
        backend = BACKENDS[kind]
        index, params = backend.make(x.shape[1], len(x), config)
        # Trained and filled on the CPU (seeded, same result on every machine); the
        # constructor copies it to the GPU for searching when one is there.
        backend.train(index, x, params, config)
        index.add(x)
        out = cls(index, metadata.reset_index(drop=True), fingerprint=fingerprint,
                  config=config, kind=kind, params=params)
        if kind != "flat":
            groups = metadata["video"].to_numpy() if "video" in metadata.columns else None
            out.recall = measure_recall(out, x, seed=config.seed, groups=groups)
            # auto's IVF visits more cells until it finds what exact search finds
            while (config.kind == "auto" and config.nprobe is None and kind == "ivf"
                   and out.recall["recall"] < AUTO_RECALL and params["nprobe"] < params["nlist"]):
                params["nprobe"] = min(params["nlist"], 2 * params["nprobe"])
                for ix in (out._cpu, out._gpu):
                    if ix is not None:
                        backend.prepare(ix, params)
                out.recall = measure_recall(out, x, seed=config.seed, groups=groups)
        return out

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best-scoring stored vectors for each query, best first.

        Args:
            queries: (Q, D) real array, finite, D == ``dim``.
            k: neighbours per query, >= 1. A k above ``ntotal`` is clipped to ``ntotal``
                (the result then has ``ntotal`` columns), so a small reference set needs
                no special case.
        Returns:
            scores: (Q, min(k, ntotal)) float32 cosine similarities ("ip") or Pearson
                correlations ("pearson"), in [-1, 1], descending along each row.
            ids: (Q, min(k, ntotal)) int64 vector ids (rows of ``metadata``). Approximate
                kinds may find fewer than k; missing slots hold id -1 and score -inf.
        Raises:
            IndexMismatchError: D differs from ``dim`` (names both).
            EchoAuditError: k < 1, non 2-D or NaN/inf queries.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise EchoAuditError(f"k must be an integer >= 1; got {k!r}")
        q = _PREPROCESS[self.config.metric](_check_matrix(queries, "queries", self.dim))
        k = int(min(k, self.ntotal))
        index = self._gpu if self._gpu is not None and k <= _GPU_MAX_K else self._cpu
        if len(q) == 0:
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        params = BACKENDS[self.kind].search_params(self.params, k)
        scores, ids = index.search(q, k) if params is None else index.search(q, k, params=params)
        scores = np.asarray(scores, np.float32)
        ids = np.asarray(ids, np.int64)
        scores[ids < 0] = -np.inf  # FAISS fills missing slots with -FLT_MAX
        return scores, ids

    # ---------------------------------------------------------------- persistence

    def save(self, folder: str | Path) -> None:
        """Write index.faiss, metadata.parquet and index.json into ``folder``, atomically
        as a whole: the folder is replaced in one rename, so readers see the old index or
        the new one, never a mix. Anything else in the folder is removed with it; a folder
        holding files the index did not write is refused."""
        folder = Path(folder)
        if folder.exists():
            if not folder.is_dir():
                raise CheckpointError(f"index folder {folder} exists and is a file; pass a folder path")
            foreign = sorted(p.name for p in folder.iterdir() if p.name not in (*_FILES, _VECTORS, _PARTIAL))
            if foreign:
                raise CheckpointError(
                    f"{folder} holds files that are not part of an index ({', '.join(foreign[:5])}); "
                    "save the index into its own folder"
                )
        with atomic_dir(folder) as tmp:
            faiss.write_index(self._cpu, str(tmp / "index.faiss"))
            try:
                self.metadata.to_parquet(tmp / "metadata.parquet", index=False)
            except (ValueError, TypeError, ImportError) as err:  # pyarrow rejects some object columns
                raise EchoAuditError(f"metadata cannot be written as parquet: {err}") from err
            np.save(tmp / _VECTORS, self.vectors(), allow_pickle=False)
            files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                     for name in (*_FILES[:2], _VECTORS)}
            write_json(tmp / "index.json", {
                "format_version": FORMAT_VERSION,
                "kind": self.kind,
                "params": self.params,
                "config": asdict(self.config),
                "fingerprint": self.fingerprint,
                "dim": self.dim,
                "ntotal": self.ntotal,
                "files": files,
                "recall": self.recall,
            })

    @classmethod
    def load(cls, folder: str | Path, *, expected_fingerprint: dict | None = None) -> "EmbeddingIndex":
        """Read an index written by ``save``.

        Args:
            folder: the index folder.
            expected_fingerprint: if given, each of its keys must hold the same value in the
                saved fingerprint (keys it does not name are not checked).
        Raises:
            IndexMismatchError: fingerprint differs (one line per key, both values, the fix).
            CheckpointError: folder or a file missing, truncated, altered or unreadable.
        """
        folder = Path(folder)
        missing = [name for name in _FILES if not (folder / name).is_file()]
        if missing:
            raise CheckpointError(
                f"no complete index in {folder}: missing {', '.join(missing)}; build it with `echoaudit index ...`"
            )
        info = read_json(folder / "index.json", what="index record", error=CheckpointError)
        if info.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{folder} has index format {str(info.get('format_version'))[:40]!r}, this version reads "
                f"{FORMAT_VERSION}; {_FIX}"
            )
        kind, dim, ntotal, config_dict, params, files, fingerprint = _check_record(info, folder / "index.json")
        if expected_fingerprint is not None:
            diff = _fingerprint_diff(_normalize_fingerprint(expected_fingerprint), fingerprint)
            if diff:
                raise IndexMismatchError(
                    f"the index in {folder} was built from other inputs than expected:\n"
                    + "\n".join(diff) + f"\nFix: {_FIX}"
                )
        if kind not in BACKENDS:
            raise CheckpointError(f"{folder} holds an index of kind {kind!r}, unknown here "
                                  f"(known: {', '.join(sorted(BACKENDS))}); {_FIX}")
        # Cheap size check first, then the hash: a truncated or altered file is named
        # here instead of surfacing as a FAISS/parquet error or wrong search results.
        for name, meta in files.items():
            path = folder / name
            try:
                intact = path.stat().st_size == meta["bytes"] and sha256_file(path) == meta["sha256"]
            except OSError as err:
                raise CheckpointError(f"{path} cannot be read ({err.strerror or err}); {_FIX}") from err
            if not intact:
                raise CheckpointError(f"{path} is corrupt (size or sha256 differs from index.json); {_FIX}")
        # FAISS trusts the lengths inside its file: a crafted one allocates what it claims
        # (GBs) before reading, and out-of-range neighbour ids crash a search. Walk it first.
        problem = _faiss_layout_problem((folder / "index.faiss").read_bytes(), kind, dim, ntotal)
        if problem:
            raise CheckpointError(f"{folder / 'index.faiss'} is corrupt: {problem}; {_FIX}")
        try:
            index = faiss.read_index(str(folder / "index.faiss"))
        except Exception as err:  # FAISS raises RuntimeError
            raise CheckpointError(f"{folder / 'index.faiss'} cannot be read by FAISS ({_last_line(err)}); {_FIX}") from err
        try:
            metadata = pd.read_parquet(folder / "metadata.parquet")
        except Exception as err:  # pyarrow raises several kinds
            raise CheckpointError(f"{folder / 'metadata.parquet'} cannot be read ({_last_line(err)}); {_FIX}") from err
        if index.d != dim or index.ntotal != ntotal or len(metadata) != ntotal:
            raise CheckpointError(
                f"{folder} is inconsistent: index.json says {ntotal} vectors of dim {dim}, the FAISS file "
                f"holds {index.ntotal} of dim {index.d}, metadata.parquet has {len(metadata)} rows; {_FIX}"
            )
        if _KIND_OF.get(type(index).__name__, kind) != kind:
            raise CheckpointError(
                f"{folder} is inconsistent: index.json says kind {kind!r}, the FAISS file holds a "
                f"{type(index).__name__}; {_FIX}"
            )
        # Whether to search on a GPU belongs to this machine, not to the saved index.
        if config_dict.get("gpu") is True:
            config_dict = {**config_dict, "gpu": None}
        try:
            config = IndexConfig(**config_dict)
            recall = info.get("recall")
            if recall is not None and not (isinstance(recall, dict) and isinstance(recall.get("recall"), (int, float))):
                raise EchoAuditError(f"recall must be null or an object with a number 'recall'; got {str(recall)[:80]!r}")
            out = cls(index, metadata, fingerprint=fingerprint, config=config, kind=kind, params=params,
                      recall=recall)
        except (TypeError, KeyError, EchoAuditError) as err:
            raise CheckpointError(f"{folder / 'index.json'} has an unusable config or params ({err}); {_FIX}") from err
        if _VECTORS in files:
            try:
                v = np.load(folder / _VECTORS, mmap_mode="r", allow_pickle=False)
            except Exception as err:  # a damaged .npy header
                raise CheckpointError(f"{folder / _VECTORS} cannot be read ({_last_line(err)}); {_FIX}") from err
            if v.dtype != np.float32 or v.shape != (ntotal, dim):
                raise CheckpointError(f"{folder / _VECTORS} holds {v.dtype} {v.shape}, not the index's float32 "
                                      f"({ntotal}, {dim}); {_FIX}")
            out._vectors_path = folder / _VECTORS
        return out


def measure_recall(index: EmbeddingIndex, vectors: np.ndarray, *, k: int = RECALL_K,
                   queries: int = RECALL_QUERIES, seed: int = 0, groups: np.ndarray | None = None) -> dict:
    """Recall@k of ``index`` against exact search, on its own vectors (real embeddings,
    not random ones: their clusters are what an approximate index can miss).

    A seeded sample of ``queries`` stored vectors is searched leave-one-group-out: every
    row of the query's group (``groups``, e.g. the video of each vector; None: each row
    its own group) is dropped from both answers, so a query behaves like a frame of a video
    the index does not hold (a synthetic or uploaded one), not like its own video's frames,
    which any index finds. Recall is the share of the exact k nearest remaining vectors
    that the index returns, averaged over the queries. ``vectors``: the (N, D) vectors as
    stored (normalised by the metric). Returns {"k", "queries", "seed", "recall"}.
    """
    n = len(vectors)
    g = np.arange(n) if groups is None else np.asarray(pd.factorize(pd.Series(groups))[0])
    biggest = int(np.bincount(g).max())
    k = int(min(k, n - biggest))
    if k < 1:
        return {"k": 0, "queries": 0, "seed": int(seed), "recall": 1.0}
    rows = np.sort(np.random.default_rng(seed).choice(n, min(queries, n), replace=False))
    q = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    wide = int(min(n, k + biggest))
    _, exact = faiss.knn(q, np.ascontiguousarray(vectors, dtype=np.float32), wide, metric=faiss.METRIC_INNER_PRODUCT)
    _, got = index.search(q, wide)

    def others(ids: np.ndarray, own: int) -> set:
        ids = ids[ids >= 0]
        return set(ids[g[ids] != own][:k].tolist())

    hits = [len(others(e, g[r]) & others(a, g[r])) / k for e, a, r in zip(exact, got, rows)]
    return {"k": k, "queries": len(rows), "seed": int(seed), "recall": round(float(np.mean(hits)), 6)}


# What each backend's FAISS index reads back as (the CPU form that save writes).
_KIND_OF = {"IndexFlatIP": "flat", "IndexIVFFlat": "ivf", "IndexHNSWFlat": "hnsw"}
# Resolved backend parameters: name -> (lowest value, highest value).
_PARAM_RANGES = {"nlist": (1, 2**31 - 1), "nprobe": (1, 2**31 - 1), "hnsw_m": (2, 2**16),
                 "ef_construction": (1, 2**31 - 1), "ef_search": (1, 2**31 - 1)}


def _last_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300]


class _Layout:
    """Reads the fields of a FAISS file in order; every length is checked against the
    bytes left before anything is taken."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"the file ends at byte {len(self.data)}, inside a field at {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def vector(self, dtype: str, what: str, expected: int | None = None) -> np.ndarray:
        n = self.take("<Q")
        itemsize = np.dtype(dtype).itemsize
        if n > (len(self.data) - self.pos) // itemsize:
            raise ValueError(f"{what} claim {n} entries ({n * itemsize} bytes), but only "
                             f"{len(self.data) - self.pos} bytes are left")
        if expected is not None and n != expected:
            raise ValueError(f"{what} has {n} entries, expected {expected}")
        out = np.frombuffer(self.data, dtype=dtype, count=n, offset=self.pos)
        self.pos += n * itemsize
        return out

    def header(self, fourcc: bytes, dim: int, ntotal: int, what: str) -> None:
        got = self.take("4s")
        if got != fourcc:
            raise ValueError(f"{what} is {got!r}, expected {fourcc!r}")
        d, n, _, _, _, metric = self.take("<iqqqBi")
        if (d, n, metric) != (dim, ntotal, faiss.METRIC_INNER_PRODUCT):
            raise ValueError(f"{what} holds {n} vectors of dim {d} (metric {metric}), "
                             f"expected {ntotal} of dim {dim} (inner product)")

    def flat(self, dim: int, ntotal: int, what: str) -> None:
        self.header(b"IxFI", dim, ntotal, what)
        self.vector("<u4", f"{what}'s vectors", expected=ntotal * dim)  # float32 words


def _faiss_layout_problem(data: bytes, kind: str, dim: int, ntotal: int) -> str:
    """Why ``data`` is not the CPU FAISS file ``save`` writes for ``kind`` with ``ntotal``
    vectors of ``dim`` ("" when it is). Layouts (FAISS index_write.cpp; little-endian):
    flat IxFI header + codes; ivf IwFl header, nlist, nprobe, flat quantizer, direct map,
    ilar lists (sizes, then codes and ids per list); hnsw IHNf header, the graph
    (assign_probas, cum_nneighbor_per_level, levels, offsets, neighbors, 5 ints), flat
    storage."""
    f = _Layout(data)
    try:
        if kind == "flat":
            f.flat(dim, ntotal, "the index")
        elif kind == "ivf":
            f.header(b"IwFl", dim, ntotal, "the index")
            nlist, _ = f.take("<QQ")
            if not 1 <= nlist <= max(ntotal, 1):
                raise ValueError(f"nlist {nlist} is not in [1, {max(ntotal, 1)}]")
            f.flat(dim, nlist, "the coarse quantizer")
            f.take("<B")
            f.vector("<i8", "the direct map", expected=0)
            if f.take("4s") != b"ilar":
                raise ValueError("the inverted lists are not stored in the file (ilar)")
            if f.take("<QQ") != (nlist, 4 * dim):
                raise ValueError("the inverted lists disagree with nlist or the code size")
            if f.take("4s") != b"full":
                raise ValueError("the inverted list sizes are not stored in full")
            sizes = f.vector("<u8", "the inverted list sizes", expected=nlist)
            if int(sizes.sum(dtype=np.uint64)) != ntotal or len(data) - f.pos != ntotal * (4 * dim + 8):
                raise ValueError(f"the inverted lists hold {int(sizes.sum(dtype=np.uint64))} vectors in "
                                 f"{len(data) - f.pos} bytes, expected {ntotal} vectors")
            ids = []
            for size in sizes.tolist():
                f.pos += size * 4 * dim
                ids.append(np.frombuffer(data, "<i8", count=size, offset=f.pos))
                f.pos += size * 8
            ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
            if len(np.unique(ids)) != ntotal or (ntotal and (ids.min() < 0 or ids.max() >= ntotal)):
                raise ValueError(f"the inverted lists' ids are not 0..{ntotal - 1}, each once")
        elif kind == "hnsw":
            f.header(b"IHNf", dim, ntotal, "the index")
            f.vector("<f8", "assign_probas")
            cum = f.vector("<i4", "cum_nneighbor_per_level")
            levels = f.vector("<i4", "levels", expected=ntotal)
            offsets = f.vector("<u8", "offsets", expected=ntotal + 1)
            neighbors = f.vector("<i4", "neighbors")
            entry, max_level = f.take("<iiiii")[:2]
            if ntotal and (levels.min() < 1 or levels.max() >= len(cum)):
                raise ValueError("a node's level is outside the levels of the graph")
            if ntotal and (offsets[0] != 0 or np.any(np.diff(offsets.astype(np.int64)) != cum[levels].astype(np.int64))
                           or int(offsets[-1]) != len(neighbors)):
                raise ValueError("the graph's offsets do not match its levels and neighbours")
            if len(neighbors) and (neighbors.min() < -1 or neighbors.max() >= ntotal):
                raise ValueError(f"a neighbour id lies outside -1..{ntotal - 1}")
            if ntotal and not (0 <= entry < ntotal and max_level == levels.max() - 1):
                raise ValueError("the graph's entry point or top level is out of range")
            f.flat(dim, ntotal, "the stored vectors")
        else:
            return f"kind {kind!r} has no known layout"
    except ValueError as err:
        return str(err)
    if f.pos != len(data):
        return f"{len(data) - f.pos} unexpected bytes after the index"
    return ""


def _check_record(info: dict, path: Path) -> tuple:
    """The fields of index.json, typed; one CheckpointError naming the file and the field
    otherwise (a wrong type here must not surface later as a KeyError or a FAISS crash)."""

    def bad(field: str, want: str):
        got = info.get(field, "<missing>")
        return CheckpointError(f"{path} is corrupt: {field} must be {want}; got {str(got)[:80]!r}; {_FIX}")

    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    kind = info.get("kind")
    if not isinstance(kind, str):
        raise bad("kind", f"one of {', '.join(sorted(BACKENDS))}")
    dim, ntotal = info.get("dim"), info.get("ntotal")
    if not whole(dim) or not 1 <= dim <= 2**20:
        raise bad("dim", "a whole number in [1, 2**20]")
    if not whole(ntotal) or not 0 <= ntotal < 2**40:
        raise bad("ntotal", "a whole number >= 0")
    config, params, files, fingerprint = (info.get(k) for k in ("config", "params", "files", "fingerprint"))
    if not isinstance(config, dict):
        raise bad("config", "an object of IndexConfig fields")
    if not isinstance(fingerprint, dict):
        raise bad("fingerprint", "an object")
    if not isinstance(params, dict) or any(
            k not in _PARAM_RANGES or not whole(v) or not _PARAM_RANGES[k][0] <= v <= _PARAM_RANGES[k][1]
            for k, v in params.items()):
        raise bad("params", f"an object of whole numbers in range, keys among {', '.join(_PARAM_RANGES)}")
    wanted = set(_FILES[:2])
    if not isinstance(files, dict) or set(files) - {_VECTORS} != wanted or not all(
            isinstance(m, dict) and whole(m.get("bytes")) and isinstance(m.get("sha256"), str) for m in files.values()):
        raise bad("files", f"an object with exactly {' and '.join(sorted(wanted))} (and optionally {_VECTORS}), "
                           "each {bytes, sha256}")
    return kind, dim, ntotal, dict(config), params, files, fingerprint


# --------------------------------------------------------------------------- resumable build


def _chunk_name(c: int) -> str:
    return f"chunk_{c:06d}"


def _read_chunk(path: Path, fingerprint: dict) -> tuple[np.ndarray, pd.DataFrame] | None:
    """A finished chunk, or None when it is missing, unreadable or made from other inputs."""
    try:
        info = read_json(path / "chunk.json", what="index chunk record", expect=dict)
        if info.get("fingerprint") != fingerprint:
            return None
        vectors = np.load(path / "vectors.npy", allow_pickle=False)
        metadata = pd.read_parquet(path / "metadata.parquet")
    except Exception:  # any damage means: embed this chunk again
        return None
    if vectors.ndim != 2 or len(vectors) != len(metadata) or len(vectors) != info.get("rows"):
        return None
    return vectors, metadata


def open_partial(folder: Path, n_items: int, chunk: int, fingerprint: dict,
                 note: Callable[[float, str], None]) -> tuple[Path, list]:
    """The partial build of ``folder`` (``folder/partial``) for ``n_items`` items in chunks
    of ``chunk``: its record written, chunks made from other inputs discarded, and each
    chunk's (vectors, metadata) when finished, else None. Shared by
    :func:`build_index_resumable` and the Ray path (:mod:`echoaudit.raypath`), which embeds
    the missing chunks elsewhere and writes them with :func:`write_chunk`."""
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise EchoAuditError(f"n_items must be an integer >= 1; got {n_items!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise EchoAuditError(f"chunk must be an integer >= 1; got {chunk!r}")
    partial = Path(folder) / _PARTIAL
    manifest = {"fingerprint": fingerprint, "n_items": int(n_items), "chunk": int(chunk)}
    if partial.exists():
        try:
            old = read_json(partial / "manifest.json", what="partial index record", expect=dict)
        except Exception:
            old = None
        if old != manifest:  # other model/data/chunking: those vectors are of no use
            shutil.rmtree(partial)
            note(0.0, "discarded partial embeddings made from other inputs; starting over")
    write_json(partial / "manifest.json", manifest)
    n_chunks = math.ceil(n_items / chunk)
    return partial, [_read_chunk(partial / _chunk_name(c), fingerprint) for c in range(n_chunks)]


def write_chunk(partial: Path, c: int, vectors: np.ndarray, metadata: pd.DataFrame,
                fingerprint: dict) -> tuple[np.ndarray, pd.DataFrame]:
    """Write finished chunk ``c`` (vectors.npy, metadata.parquet, chunk.json) atomically."""
    with atomic_dir(partial / _chunk_name(c)) as tmp:
        np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
        metadata.to_parquet(tmp / "metadata.parquet", index=False)
        write_json(tmp / "chunk.json", {"fingerprint": fingerprint, "rows": len(vectors)})
    return vectors, metadata


def build_index_resumable(folder: str | Path, n_items: int,
                          embed_fn: Callable[[int], tuple[np.ndarray, pd.DataFrame]], *,
                          fingerprint: dict, config: IndexConfig = IndexConfig(), chunk: int = CHUNK,
                          progress: Callable[[float, str], None] | None = None) -> EmbeddingIndex:
    """Embed ``n_items`` items (videos) one by one, index all their vectors, save to ``folder``.

    ``embed_fn(i)`` returns (vectors (T_i, D) float, metadata with T_i rows) for item i.
    Finished chunks of ``chunk`` items are saved under ``folder/partial/chunk_NNNNNN/``
    (vectors.npy, metadata.parquet, chunk.json with the fingerprint; each chunk written
    atomically). After an interruption, a second call with the same fingerprint, n_items
    and chunk reuses the finished chunks and embeds only the rest; chunks made with
    another fingerprint (or another n_items/chunk) are discarded and the build starts over.
    At the end the index is built, saved (``EmbeddingIndex.save``) and partial/ removed.

    Progress: a tqdm bar over items, and ``progress(frac, message)`` with frac in [0, 1]
    (embedding fills 0..0.9, building and saving the rest).

    Raises:
        EchoAuditError: n_items < 1, chunk < 1, an item whose vectors/metadata are
            malformed (the message names the item), or dims that differ between items.
    """
    folder = Path(folder)
    fingerprint = _normalize_fingerprint(fingerprint)
    note = progress or (lambda frac, msg: None)
    partial, parts = open_partial(folder, n_items, chunk, fingerprint, note)
    n_chunks = len(parts)
    done = sum(min(chunk, n_items - c * chunk) for c, p in enumerate(parts) if p is not None)
    if done:
        note(0.9 * (done / n_items), f"resuming: {done} of {n_items} items already embedded")
    dim = next((p[0].shape[1] for p in parts if p is not None), None)

    with tqdm(total=n_items, initial=done, desc="embedding", unit="item") as bar:
        for c in range(n_chunks):
            if parts[c] is not None:
                continue
            vecs, metas = [], []
            for i in range(c * chunk, min((c + 1) * chunk, n_items)):
                v, m = embed_fn(i)
                v = _check_matrix(v, f"vectors of item {i}", dim)
                if not isinstance(m, pd.DataFrame) or len(m) != len(v):
                    got = len(m) if isinstance(m, pd.DataFrame) else type(m).__name__
                    raise EchoAuditError(f"embed_fn({i}) returned {len(v)} vectors but metadata {got}; "
                                         "need a DataFrame with one row per vector")
                dim = v.shape[1]
                vecs.append(v)
                metas.append(m)
                bar.update(1)
                note(0.9 * ((i + 1) / n_items), f"embedded item {i + 1} of {n_items}")
            parts[c] = write_chunk(partial, c, np.concatenate(vecs), pd.concat(metas, ignore_index=True), fingerprint)

    note(0.9, "building the index")
    embeddings = np.concatenate([p[0] for p in parts])
    metadata = pd.concat([p[1] for p in parts], ignore_index=True)
    index = EmbeddingIndex.build(embeddings, metadata, fingerprint=fingerprint, config=config)
    note(0.95, "saving the index")
    index.save(folder)  # replaces the folder whole, partial/ included
    note(1.0, f"indexed {index.ntotal} vectors from {n_items} items ({index.kind})")
    # Read back what was saved: a resumed build (metadata from parquet chunks) and an
    # uninterrupted one (metadata from memory) then return identical objects.
    return EmbeddingIndex.load(folder)
