"""Latents computed once: a workspace keeps the VAE latents of exactly the frames each of
its data sets is read at (the TRAIN videos' indexed frames, the held-out and synthetic
videos' query frames), so every later stage that needs them embeds them with a re-ID
instead of decoding and encoding the videos again: a second filter with another re-ID
(``echoaudit filters add``) over the training index, the calibration videos and every
synthetic set, or a rebuilt index. VAE encoding is the dominant cost of an EchoNet-size
audit on CPU (~5 ms a frame at 112 px on two cores; decoding the strided frames ~1).

Layout (``WS/latents/<key>/``; keys ``train``, ``heldout``, ``set_<name>``)::

    record.json               the fingerprint, the number of videos, the chunk size
    chunk_NNNNNN/latents.npy  (R, C, h, w) float32: the latents of videos first .. first+63, one after another
    chunk_NNNNNN/lengths.npy  (k,) int64: frames of each of those videos
    chunk_NNNNNN/chunk.json   the fingerprint, first position, video names, rows

The fingerprint holds the VAE's sha256, the videos (name, size, modification time of
each file), how they are read (frame size, stride, clip frame rate, frames kept): a store
made from other inputs is discarded whole; a damaged chunk is encoded again. A chunk is
written, atomically, once all its videos are encoded, so a stopped run keeps what it
finished. Each video is encoded on its own, in the VAE's batches of 16 frames: the latents
are bit for bit what encoding the video alone gives (the dashboard's upload path, the Ray
workers), which keeps those paths byte-identical; batching frames across videos would
gain ~13 % for clips of 8 query frames and lose that.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from echoaudit.fileio import atomic_dir, read_json, remove_tree, write_json

__all__ = ["LatentStore", "videos_digest", "CHUNK"]

CHUNK = 64
_RECORD = "record.json"


def videos_digest(dataset) -> str:
    """sha256 over the data set's videos: name, size and modification time of each file."""
    h = hashlib.sha256()
    for name, path in zip(dataset.names, dataset.table["path"]):
        try:
            st = os.stat(path)
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:  # reading it will say what is wrong
            h.update(f"{name}\0missing\n".encode())
    return h.hexdigest()


class LatentStore:
    """The latents of one data set's videos as read with ``load_kwargs`` (first ``keep``
    frames of what ``dataset.load(i, size=size, **load_kwargs)`` returns; None: all).

    ``has(i)`` / ``get(i)`` read finished chunks (memory-mapped); ``put(i, latents)``
    collects a video's latents and writes its chunk once the chunk is whole.
    """

    def __init__(self, folder: str | Path, dataset, *, vae_sha256: str, size: int, load_kwargs: dict,
                 keep: int | None):
        self.folder = Path(folder)
        self.names = list(dataset.names)
        self.n = len(self.names)
        self.fingerprint = {"vae": str(vae_sha256), "videos": videos_digest(dataset), "n_videos": self.n,
                            "size": int(size), "load": {k: load_kwargs[k] for k in sorted(load_kwargs)},
                            "keep": None if keep is None else int(keep)}
        record = {"fingerprint": self.fingerprint, "chunk": CHUNK}
        if self.folder.exists():
            try:
                old = read_json(self.folder / _RECORD, what="latent store record", expect=dict)
            except Exception:
                old = None
            if old != record:  # another VAE, other videos or another reading: of no use
                remove_tree(self.folder)
        if not (self.folder / _RECORD).is_file():
            write_json(self.folder / _RECORD, record)
        self._chunks: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        self._pending: dict[int, dict[int, np.ndarray]] = {}

    def _bounds(self, c: int) -> tuple[int, int]:
        return c * CHUNK, min((c + 1) * CHUNK, self.n)

    def _chunk(self, c: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(latents memmap, offsets) of finished chunk c, or None (missing or damaged)."""
        if c not in self._chunks:
            self._chunks[c] = self._read(c)
        return self._chunks[c]

    def _read(self, c: int):
        a, b = self._bounds(c)
        path = self.folder / f"chunk_{c:06d}"
        try:
            info = read_json(path / "chunk.json", what="latent chunk record", expect=dict)
            if info.get("fingerprint") != self.fingerprint or info.get("first") != a or info.get("videos") != self.names[a:b]:
                return None
            lat = np.load(path / "latents.npy", mmap_mode="r", allow_pickle=False)
            lengths = np.load(path / "lengths.npy", allow_pickle=False)
        except Exception:  # any damage: encode this chunk again
            return None
        if (lat.dtype != np.float32 or lat.ndim != 4 or lengths.shape != (b - a,) or (lengths < 0).any()
                or int(lengths.sum()) != len(lat) or info.get("rows") != len(lat)):
            return None
        return lat, np.concatenate([[0], np.cumsum(lengths)])

    def has(self, i: int) -> bool:
        return self._chunk(int(i) // CHUNK) is not None

    def get(self, i: int) -> np.ndarray:
        """(T_i, C, h, w) float32 latents of video ``i`` (a copy; KeyError when not stored)."""
        i = int(i)
        found = self._chunk(i // CHUNK)
        if found is None:
            raise KeyError(f"video {i} ({self.names[i]}) has no stored latents in {self.folder}")
        lat, off = found
        j = i - (i // CHUNK) * CHUNK
        return np.array(lat[off[j]:off[j + 1]])

    def put(self, i: int, latents) -> None:
        """Keep video ``i``'s latents; write its chunk when every video of it is in."""
        i, c = int(i), int(i) // CHUNK
        if self._chunk(c) is not None:
            return
        part = self._pending.setdefault(c, {})
        part[i] = np.ascontiguousarray(np.asarray(latents, dtype=np.float32))
        a, b = self._bounds(c)
        if len(part) < b - a:
            return
        videos = [part[k] for k in range(a, b)]
        with atomic_dir(self.folder / f"chunk_{c:06d}") as tmp:
            np.save(tmp / "latents.npy", np.concatenate(videos), allow_pickle=False)
            np.save(tmp / "lengths.npy", np.array([len(v) for v in videos], np.int64), allow_pickle=False)
            write_json(tmp / "chunk.json", {"fingerprint": self.fingerprint, "first": a, "videos": self.names[a:b],
                                            "rows": int(sum(len(v) for v in videos))})
        del self._pending[c]
        self._chunks.pop(c, None)

    def stored(self) -> int:
        """How many videos have stored latents."""
        return sum(self._bounds(c)[1] - self._bounds(c)[0] for c in range(-(-self.n // CHUNK))
                   if self._chunk(c) is not None)
