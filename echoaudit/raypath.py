"""Scale-out on Ray: the two heavy stages of a workspace as Ray Data jobs.

* **Training index embedding** (decode -> VAE -> re-ID over the TRAIN videos, in the
  index build's chunks of ``echoaudit.index.CHUNK`` videos): :func:`embed_index_chunks`.
* **Audit of a synthetic set** (decode -> VAE -> re-ID -> search -> head, in the scoring
  chunks of :func:`echoaudit.scoring.audit_synthetic_set_chunked`): :func:`audit_set_chunks`.

Each is a ``ray.data`` dataset of the chunks still missing, mapped by a pool of actors
that load the models (and, for the audit, the workspace's index) once. The driver writes
each finished chunk with the local path's own writers (:func:`echoaudit.index.write_chunk`,
:func:`echoaudit.scoring.write_set_chunk`) as it arrives, so:

* a workspace can be built by either path: the local code then finds every chunk done and
  only assembles them (the index, the set's tables), byte for byte what it would have made;
* a Ray run that is stopped leaves its finished chunks; the next run, Ray or local,
  computes only the others.

Where: ``address`` ``"auto"`` joins the cluster this machine belongs to (``ray start``,
``RAY_ADDRESS``) or, with none, starts a local one on this machine's cores; ``"local"``
always starts a local one; anything else is a cluster address (``ray://host:10001`` or
``host:6379``). A call made while Ray is already initialised uses that cluster. On a
cluster of several machines the workspace folder, the data set and the synthetic set must
be at the same path on every node (a shared file system) and EchoAudit installed there:
workers read the videos and models themselves; only chunk results come back.

Resources: one actor per ``cpus_per_worker`` CPUs of the cluster, or one per GPU when the
cluster has GPUs (the models on it). Each actor runs torch with ``threads`` threads,
by default as many as the driver's: the VAE's convolutions give other low bits with
another thread count, so that is what makes the Ray path byte-identical to the local one
(on CPUs of one kind; results on a GPU agree to float precision, not bit for bit). Ray is an optional
extra (``pip install -e '.[ray]'`` or ``-r requirements-ray.txt``); nothing else in
EchoAudit imports it.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from echoaudit.errors import EchoAuditError

__all__ = ["ray_cluster", "embed_index_chunks", "audit_set_chunks", "RAY_MISSING"]

Progress = Callable[[float, str], None]
RAY_MISSING = ("--ray needs Ray, an optional extra of EchoAudit: pip install -e '.[ray]' "
               "(or pip install -r requirements-ray.txt)")


# No usage statistics: nothing leaves the machine, and Ray Data's collector would otherwise
# query a Prometheus server that is not there (a stack trace on stderr per job). Set before
# Ray starts, so the nodes a local cluster starts inherit them.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise EchoAuditError(RAY_MISSING) from err
    return ray


@contextlib.contextmanager
def ray_cluster(address: str = "auto") -> Iterator:
    """The ``ray`` module, connected as ``address`` says (see the module docstring); a
    cluster this call started is shut down at the end, one it joined is left running."""
    ray = _ray()
    if not isinstance(address, str) or not address.strip():
        raise EchoAuditError(f"--ray takes 'auto', 'local' or a cluster address; got {address!r}")
    if ray.is_initialized():
        yield ray
        return
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    if address == "local":
        ray.init(include_dashboard=False, **quiet)
    elif address == "auto":
        try:
            ray.init(address="auto", **quiet)
        except (ConnectionError, RuntimeError, ValueError):  # no cluster here: start one on this machine
            ray.init(include_dashboard=False, **quiet)
    else:
        try:
            ray.init(address=address, **quiet)
        except Exception as err:  # ConnectionError, or Ray's own errors for a bad address
            raise EchoAuditError(f"cannot join the Ray cluster at {address!r}: {str(err).splitlines()[0][:200]}") from err
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours (tqdm, progress callbacks) count chunks
    try:
        yield ray
    finally:
        ray.shutdown()


def _pool(ray, cpus_per_worker: float, workers: int | None) -> dict:
    """map_batches keyword arguments: an actor pool over the cluster's GPUs, or its CPUs."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        n, per = gpus, {"num_gpus": 1, "num_cpus": cpus_per_worker}
    else:
        n, per = max(1, int(res.get("CPU", 1) // cpus_per_worker)), {"num_cpus": cpus_per_worker}
    n = min(n, workers) if workers else n
    return {"compute": ray.data.ActorPoolStrategy(min_size=1, max_size=n), **per}


def _threads(threads: int | None) -> int:
    import torch

    return int(threads) if threads else torch.get_num_threads()


def _setup_worker(threads: int) -> str:
    import torch

    torch.set_num_threads(max(1, int(threads)))
    return "cuda" if torch.cuda.is_available() else "cpu"


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue()


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _run(ray, items: list[dict], actor, kwargs: dict, pool: dict) -> Iterator[dict]:
    """Each item mapped by ``actor(**kwargs)``, one item a batch; results as they finish."""
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    out = ds.map_batches(actor, fn_constructor_kwargs=kwargs, batch_size=1, batch_format="numpy", **pool)
    for batch in out.iter_batches(batch_size=1, batch_format="numpy"):
        yield {k: v[0] for k, v in batch.items()}


# --------------------------------------------------------------------------- index embedding


class _TrainEmbedder:
    """Actor: a data set's TRAIN videos -> the index chunks' vectors and metadata."""

    def __init__(self, data: str, on_missing: str, vae: str, reid: str, index_stride: int, size: int,
                 data_fingerprint: str, threads: int):
        from echoaudit.build import _data_fingerprint
        from echoaudit.data.echonet import EchoNetDataset
        from echoaudit.models.reid import load_reid
        from echoaudit.models.vae import FrameVAE

        device = _setup_worker(threads)
        self.train = EchoNetDataset.open(data, on_missing=on_missing).split("TRAIN")
        if _data_fingerprint(self.train) != data_fingerprint:
            raise EchoAuditError(f"the TRAIN videos this worker reads at {data} differ from the driver's; "
                                 "every node must see the same data set at the same path")
        self.table = self.train.table.reset_index(drop=True)
        self.vae, self.reid = FrameVAE.from_pretrained(vae), load_reid(reid).eval()
        self.vae.vae.to(device)
        self.reid.to(device)
        self.stride, self.size = int(index_stride), int(size)

    def __call__(self, batch: dict) -> dict:
        from echoaudit.engine import index_item_metadata
        from echoaudit.scoring import embed_video_frames

        c, a, b = (int(batch[k][0]) for k in ("c", "first", "end"))
        vecs, metas = [], []
        for i in range(a, b):
            frames = self.train.load(i, size=self.size, frame_step=self.stride).frames
            emb = embed_video_frames(self.vae, self.reid, frames).astype(np.float32)
            vecs.append(emb)
            metas.append(index_item_metadata(self.table.iloc[i], len(emb), self.stride))
        return {"c": np.array([c]), "vectors": np.array([_npy(np.concatenate(vecs))], dtype=object),
                "metadata": np.array([_parquet(pd.concat(metas, ignore_index=True))], dtype=object)}


def embed_index_chunks(folder: str | Path, train, *, data: str | Path, on_missing: str, vae: str | Path,
                       reid: str | Path, fingerprint: dict, index_stride: int, size: int, address: str = "auto",
                       cpus_per_worker: float = 1, workers: int | None = None, threads: int | None = None,
                       progress: Progress | None = None) -> int:
    """Embed the training index's missing chunks on Ray, into ``folder/partial`` (the
    layout of :func:`echoaudit.index.build_index_resumable`, which then builds the index
    from them). ``train``: the TRAIN split as the driver opened it from ``data``;
    ``fingerprint``: the index's. Returns how many videos were embedded here."""
    from echoaudit.build import _data_fingerprint
    from echoaudit.index import CHUNK, _check_matrix, _normalize_fingerprint, open_partial, write_chunk

    note = progress or (lambda frac, msg: None)
    fingerprint = _normalize_fingerprint(fingerprint)
    n = len(train)
    partial, parts = open_partial(Path(folder), n, CHUNK, fingerprint, note)
    todo = [{"c": c, "first": c * CHUNK, "end": min((c + 1) * CHUNK, n)} for c, p in enumerate(parts) if p is None]
    if not todo:
        return 0
    total = sum(t["end"] - t["first"] for t in todo)
    kwargs = {"data": str(Path(data).resolve()), "on_missing": on_missing, "vae": str(Path(vae).resolve()),
              "reid": str(Path(reid).resolve()), "index_stride": int(index_stride), "size": int(size),
              "data_fingerprint": _data_fingerprint(train), "threads": _threads(threads)}
    done = n - total
    if done:
        note(done / n, f"resuming: {done} of {n} items already embedded")
    with ray_cluster(address) as ray, tqdm(total=n, initial=done, desc="embedding (ray)", unit="video") as bar:
        pool = _pool(ray, cpus_per_worker, workers)
        note(done / n, f"embedding {total} TRAIN videos in {len(todo)} chunks on Ray")
        for r in _run(ray, todo, _TrainEmbedder, kwargs, pool):
            c = int(r["c"])
            v = _check_matrix(np.load(io.BytesIO(r["vectors"]), allow_pickle=False), f"vectors of chunk {c}")
            m = pd.read_parquet(io.BytesIO(r["metadata"]))
            write_chunk(partial, c, v, m, fingerprint)
            k = min((c + 1) * CHUNK, n) - c * CHUNK
            done += k
            bar.update(k)
            note(done / n, f"embedded {done} of {n} TRAIN videos (Ray)")
    return total


# --------------------------------------------------------------------------- set audit


class _SetScorer:
    """Actor: chunks of a synthetic set -> their four SetAudit tables, scored against a
    workspace (models and index loaded once)."""

    def __init__(self, workspace: str, folder: str, set_name: str, top: int, clip: dict | None,
                 temporal_videos: list[str] | None, threads: int):
        from echoaudit.data.clips import ClipSpec
        from echoaudit.data.echonet import EchoNetDataset
        from echoaudit.workspace import Workspace

        device = _setup_worker(threads)
        self.engine = Workspace(workspace).engine
        self.engine.vae.vae.to(device)
        self.engine.reid.to(device)
        self.ds = EchoNetDataset.open(folder)
        self.set_name, self.top = set_name, int(top)
        self.clip = None if clip is None else ClipSpec(**clip)
        self.wanted = None if temporal_videos is None else set(temporal_videos)

    def __call__(self, batch: dict) -> dict:
        from echoaudit.data.prefetch import VideoPrefetcher
        from echoaudit.scoring import clip_load_kwargs, score_chunk

        c, a, b = (int(batch[k][0]) for k in ("c", "first", "end"))
        load_kwargs, _ = clip_load_kwargs(self.clip, self.engine.config.frame_stride)
        with VideoPrefetcher(self.ds, size=self.engine.config.size, **load_kwargs) as videos:
            part = score_chunk(self.engine, videos, self.ds, a, b, self.set_name, top=self.top, wanted=self.wanted,
                               clip=self.clip)
        return {"c": np.array([c]), **{k: np.array([_parquet(getattr(part, k))], dtype=object)
                                       for k in ("scores", "temporal", "embeddings", "first_frames")}}


def audit_set_chunks(workspace: str | Path, dataset, set_name: str, *, chunk_dir: str | Path, fingerprint: dict,
                     chunk: int, top: int, clip=None, temporal_videos: Collection[str] | None = None,
                     address: str = "auto", cpus_per_worker: float = 1, workers: int | None = None,
                     threads: int | None = None, progress: Progress | None = None) -> int:
    """Score the missing chunks of ``dataset`` (a synthetic set opened from its folder) as
    set ``set_name`` on Ray, into ``chunk_dir`` (the layout of
    :func:`echoaudit.scoring.audit_synthetic_set_chunked`, which then joins them).
    Returns how many videos were scored here."""
    from echoaudit.index import _normalize_fingerprint
    from echoaudit.scoring import SetAudit, emb_as_lists, open_set_partial, write_set_chunk

    note = progress or (lambda frac, msg: None)
    fingerprint = _normalize_fingerprint(fingerprint)
    names = list(dataset.names)
    n = len(names)
    bounds, parts = open_set_partial(Path(chunk_dir), set_name, names, chunk, fingerprint, note)
    todo = [{"c": c, "first": a, "end": b} for c, ((a, b), p) in enumerate(zip(bounds, parts)) if p is None]
    if not todo:
        return 0
    total = sum(t["end"] - t["first"] for t in todo)
    kwargs = {"workspace": str(Path(workspace).resolve()), "folder": str(Path(dataset.root).resolve()),
              "set_name": set_name, "top": int(top), "clip": None if clip is None else clip.to_dict(),
              "temporal_videos": None if temporal_videos is None else sorted(str(v) for v in temporal_videos),
              "threads": _threads(threads)}
    done = n - total
    if done:
        note(done / n, f"resuming: {done} of {n} videos already scored")
    with ray_cluster(address) as ray, tqdm(total=n, initial=done, desc=f"auditing {set_name} (ray)",
                                           unit="video", leave=False) as bar:
        pool = _pool(ray, cpus_per_worker, workers)
        note(done / n, f"{set_name}: scoring {total} videos in {len(todo)} chunks on Ray")
        for r in _run(ray, todo, _SetScorer, kwargs, pool):
            c = int(r["c"])
            a, b = bounds[c]
            tables = {k: pd.read_parquet(io.BytesIO(r[k])) for k in ("scores", "temporal", "embeddings", "first_frames")}
            for k in ("embeddings", "first_frames"):
                emb_as_lists(tables[k])
            write_set_chunk(Path(chunk_dir), c, SetAudit(**tables), fingerprint, a, names[a:b])
            done += b - a
            bar.update(b - a)
            note(done / n, f"{set_name}: {done}/{n} videos (Ray)")
    return total
