"""Decode the videos of a data set ahead of use, in background threads.

Decoding one video starts an ffmpeg process and waits on its pipe (~90 ms for 64 frames at
112x112), time in which the GIL is free. A loop that decodes and then encodes each video
in turn leaves a core idle during every decode; with a ``VideoPrefetcher`` the next
videos decode while the current one is encoded. Results are the same as
``dataset.load(i, **kwargs)``; only the timing changes.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["VideoPrefetcher"]


class VideoPrefetcher:
    """``get(i)`` returns ``dataset.load(i, **load_kwargs)`` and starts decoding positions
    i+1 .. i+ahead in ``workers`` threads. Use as a context manager (or call ``close``).

    Errors of a load (VideoError, DatasetError) are raised by the ``get`` that asks for
    that video, as a direct call would raise them; prefetched videos nobody asks for are
    dropped at ``close``.
    """

    def __init__(self, dataset, *, ahead: int = 4, workers: int = 2, **load_kwargs: Any):
        if ahead < 0 or workers < 1:
            raise ValueError(f"need ahead >= 0 and workers >= 1; got ahead={ahead}, workers={workers}")
        self.dataset = dataset
        self.ahead = int(ahead)
        self.load_kwargs = load_kwargs
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="video-prefetch")
        self._pending: dict[int, Future] = {}

    def _submit(self, i: int) -> None:
        if 0 <= i < len(self.dataset) and i not in self._pending:
            self._pending[i] = self._pool.submit(self.dataset.load, i, **self.load_kwargs)

    def get(self, i: int):
        i = int(i)
        if not 0 <= i < len(self.dataset):
            return self.dataset.load(i, **self.load_kwargs)  # raises the data set's own error
        self._submit(i)
        for j in range(i + 1, i + 1 + self.ahead):
            self._submit(j)
        # Drop what is behind us (a caller that skips items, e.g. a resumed index build).
        for j in [j for j in self._pending if j < i]:
            self._pending.pop(j).cancel()
        return self._pending.pop(i).result()

    def close(self) -> None:
        for f in self._pending.values():
            f.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "VideoPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
