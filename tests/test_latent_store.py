"""Latents computed once (issue 16, part 3): the workspace's latent stores (WS/latents/),
their fingerprints and chunks, and a second filter with another re-ID that reuses them
instead of running the VAE again."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from echoaudit.data.echonet import EchoNetDataset
from echoaudit.filters import add_filter, filter_verdicts
from echoaudit.latent_store import CHUNK, LatentStore
from echoaudit.models.vae import FrameVAE
from echoaudit.scoring import clip_load_kwargs, latent_store_for, train_latent_store
from echoaudit.workspace import Workspace


class _Set:
    """A stand-in data set of n video files (names and paths are all a store reads)."""

    def __init__(self, folder, n):
        folder.mkdir(parents=True, exist_ok=True)
        self.names = [f"v{i:03d}" for i in range(n)]
        paths = []
        for name in self.names:
            (folder / f"{name}.avi").write_bytes(name.encode())
            paths.append(str(folder / f"{name}.avi"))
        self.table = pd.DataFrame({"FileName": self.names, "path": paths})


def _store(tmp_path, ds, vae="a" * 64, keep=None):
    return LatentStore(tmp_path / "store", ds, vae_sha256=vae, size=64, load_kwargs={"frame_step": 2}, keep=keep)


def test_store_writes_whole_chunks_and_reads_them_back(tmp_path):
    n = CHUNK + 3
    ds = _Set(tmp_path / "videos", n)
    rng = np.random.default_rng(0)
    lat = [rng.standard_normal((int(rng.integers(1, 5)), 4, 2, 2)).astype(np.float32) for _ in range(n)]
    store = _store(tmp_path, ds)
    for i in range(CHUNK - 1):
        store.put(i, lat[i])
    assert not store.has(0) and store.stored() == 0  # a chunk is written once whole
    store.put(CHUNK - 1, lat[CHUNK - 1])
    assert store.has(0) and store.has(CHUNK - 1) and not store.has(CHUNK) and store.stored() == CHUNK
    for i in range(CHUNK, n):
        store.put(i, lat[i])
    again = _store(tmp_path, ds)  # a later run: everything there, bit for bit
    assert again.stored() == n
    for i in (0, 17, CHUNK - 1, CHUNK, n - 1):
        got = again.get(i)
        assert got.dtype == np.float32 and got.tobytes() == lat[i].tobytes() and got.flags.writeable
    # Another VAE (or other videos, or another reading) discards the store whole.
    assert _store(tmp_path, ds, vae="b" * 64).stored() == 0
    assert not list((tmp_path / "store").glob("chunk_*"))


def test_damaged_or_foreign_chunk_is_not_trusted(tmp_path):
    ds = _Set(tmp_path / "videos", 5)
    store = _store(tmp_path, ds)
    for i in range(5):
        store.put(i, np.full((2, 4, 2, 2), i, np.float32))
    chunk = tmp_path / "store" / "chunk_000000"
    data = (chunk / "latents.npy").read_bytes()
    (chunk / "latents.npy").write_bytes(data[: len(data) // 2])
    fresh = _store(tmp_path, ds)
    assert not fresh.has(0)
    with pytest.raises(KeyError, match="no stored latents"):
        fresh.get(0)
    # A video file that changed (size or time) is another video: the store starts over.
    (tmp_path / "videos" / "v002.avi").write_bytes(b"another video")
    assert _store(tmp_path, ds).stored() == 0


def test_workspace_keeps_latents_of_what_each_stage_read(tiny_workspace):
    """A built workspace holds the latents of every TRAIN video's indexed frames and of the
    held-out and synthetic videos' query frames, equal bit for bit to encoding them now."""
    ws = Workspace(tiny_workspace)
    vae_sha, ecfg, clip = ws.manifest["models"]["vae"]["sha256"], ws.engine.config, ws.clip_spec
    stores = {"train": (train_latent_store(ws.root, ws.train, vae_sha256=vae_sha, engine_config=ecfg), ws.train,
                        {"frame_step": ecfg.index_stride}, None),
              "heldout": (latent_store_for(ws.root, "heldout", ws.heldout, vae_sha256=vae_sha, engine_config=ecfg,
                                           clip=clip), ws.heldout, *clip_load_kwargs(clip, ecfg.frame_stride))}
    for s in ws.synthetic_names:
        syn = ws.synthetic(s)
        stores[s] = (latent_store_for(ws.root, f"set_{s}", syn, vae_sha256=vae_sha, engine_config=ecfg, clip=clip),
                     syn, *clip_load_kwargs(clip, ecfg.frame_stride))
    for key, (store, ds, load_kwargs, keep) in stores.items():
        assert store.stored() == len(ds), key
        for i in (0, len(ds) - 1):
            frames = ds.load(i, size=ecfg.size, **load_kwargs).frames[:keep]
            assert store.get(i).tobytes() == ws.vae.encode(frames).numpy().tobytes(), (key, i)


def test_second_filter_reuses_the_stored_latents(tiny_workspace, tmp_path, monkeypatch):
    """A second video filter (another re-ID over the training index, the calibration videos
    and every set) runs no VAE at all on a built workspace, and its verdicts are those it
    gives when it has to encode everything itself."""
    shutil.copytree(tiny_workspace.parent, tmp_path / "a", symlinks=True)
    shutil.copytree(tiny_workspace.parent, tmp_path / "b", symlinks=True)
    with_store = Workspace(tmp_path / "a" / tiny_workspace.name)
    without = Workspace(tmp_path / "b" / tiny_workspace.name)
    shutil.rmtree(without.root / "latents")
    reid = tiny_workspace.parent / "models" / "reid" / "best"  # the same weights: a network of another folder

    def no_vae(self, frames, **kw):
        raise AssertionError("the VAE ran: stored latents were not used")

    with monkeypatch.context() as m:
        m.setattr(FrameVAE, "encode", no_vae)
        add_filter(with_store, "other", reid, scorer="video")
    add_filter(without, "other", reid, scorer="video")
    assert (without.root / "latents" / "train").is_dir()  # it stored what it encoded
    for s in with_store.synthetic_names:
        pd.testing.assert_frame_equal(filter_verdicts(with_store, "other", s), filter_verdicts(without, "other", s),
                                      check_exact=True)


def test_store_reads_what_the_data_set_lists(tiny_workspace):
    """The store's videos are the data set's, in its order (a FileList reordered is other input)."""
    ws = Workspace(tiny_workspace)
    ds = EchoNetDataset.open(ws.synthetic(ws.synthetic_names[0]).root)
    store = latent_store_for(ws.root, f"set_{ws.synthetic_names[0]}", ds,
                             vae_sha256=ws.manifest["models"]["vae"]["sha256"], engine_config=ws.engine.config,
                             clip=ws.clip_spec)
    assert store.names == list(ds.names) and store.stored() == len(ds)
