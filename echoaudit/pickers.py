"""Bounded choices for screens over 10,000-100,000 videos: find a video or patient by
typing part of its name, a short list to pick from first (the flagged videos, the
uncovered training videos, the highest scores), one page of a table at a time, and a
seeded sample of points for a scatter.

A dashboard that offers every video in a drop-down or draws every row of a table stops
being usable (and fast) at EchoNet size; these pure functions decide what a page shows,
so the pages only draw it. No Streamlit here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "MAX_OPTIONS",
    "PAGE_SIZES",
    "Matches",
    "search",
    "search_table",
    "shortlist",
    "options_with",
    "n_pages",
    "clamp_page",
    "page_bounds",
    "page_rows",
    "page_caption",
    "spread_sample",
]

#: The most names a picker offers at once; a search that matches more says so.
MAX_OPTIONS = 200
#: Rows per page a table offers (the first is the smallest page a table is split at).
PAGE_SIZES = (25, 50, 100, 200)


@dataclass(frozen=True)
class Matches:
    """The names a search offers and how many matched in all.

    ``names``: at most ``limit`` matching names, in the order of the searched list;
    ``total``: how many names matched (``total - len(names)`` were left out)."""

    names: list[str]
    total: int

    @property
    def more(self) -> int:
        """Matches not offered (refine the search to reach them)."""
        return self.total - len(self.names)

    def sentence(self, what: str = "videos") -> str:
        """One line for under the picker: how many matched, and whether some are left out."""
        if self.total == 0:
            return f"No {what} match."
        if self.more:
            return (f"{self.total:,} {what} match; the first {len(self.names):,} are offered, "
                    f"{self.more:,} more: refine the search.")
        return f"{self.total:,} {what} match."


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or int(limit) < 1:
        raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
    return int(limit)


def search(names: Sequence[str], query: str, *, also: Sequence[str] | None = None,
           limit: int = MAX_OPTIONS) -> Matches:
    """Names containing ``query`` (case-insensitive, surrounding spaces ignored), or whose
    entry in ``also`` (e.g. the patient of each video, same length as ``names``) does.
    An empty query matches every name. Order is kept; at most ``limit`` are returned.

    Args:
        names: (N,) video names.
        query: the text typed.
        also: optional (N,) second text per name searched too (patient IDs).
        limit: the most names returned (>= 1).

    Returns:
        :class:`Matches` (names offered, total matched).
    """
    limit = _check_limit(limit)
    values = pd.Series(np.asarray(names, dtype=object), dtype=object).astype(str)
    if also is not None and len(also) != len(values):
        raise ValueError(f"also must give one text per name ({len(values)}), got {len(also)}")
    q = str(query or "").strip()
    if not q:
        return Matches(values.iloc[:limit].tolist(), len(values))
    hit = values.str.contains(q, case=False, regex=False).to_numpy(bool)
    if also is not None:
        other = pd.Series(np.asarray(also, dtype=object), dtype=object).astype(str)
        hit = hit | other.str.contains(q, case=False, regex=False).to_numpy(bool)
    idx = np.flatnonzero(hit)
    return Matches(values.iloc[idx[:limit]].tolist(), int(idx.size))


def search_table(table: pd.DataFrame, query: str, columns: Sequence[str]) -> pd.DataFrame:
    """The rows of ``table`` where any of ``columns`` contains ``query`` (case-insensitive,
    plain text); every row for an empty query. Row order is kept."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"search_table: no column {missing} in the table; it has {list(table.columns)}")
    q = str(query or "").strip()
    if not q or table.empty:
        return table
    hit = np.zeros(len(table), bool)
    for c in columns:
        hit |= table[c].astype(str).str.contains(q, case=False, regex=False).to_numpy(bool)
    return table[hit]


def shortlist(*groups: Iterable[str], limit: int = MAX_OPTIONS) -> list[str]:
    """The first ``limit`` distinct names of the groups, in order (e.g. the undecided
    flagged videos, then the borderline ones, then the rest by score)."""
    limit = _check_limit(limit)
    out: list[str] = []
    seen: set[str] = set()
    for group in groups:
        for name in group:
            name = str(name)
            if name not in seen:
                seen.add(name)
                out.append(name)
                if len(out) == limit:
                    return out
    return out


def options_with(options: Sequence[str], current: str | Sequence[str] | None, valid) -> list[str]:
    """``options`` with the current choice(s) kept first when they are valid names
    (``valid``: a set or any container) but not among the options: typing a search
    never silently changes what is chosen."""
    chosen = [] if current is None else [current] if isinstance(current, str) else list(current)
    keep = [c for c in chosen if c in valid and c not in set(options)]
    return keep + list(options)


def n_pages(n_rows: int, page_size: int) -> int:
    """Pages of ``page_size`` rows needed for ``n_rows`` rows: ceil(n / size), at least 1."""
    size = _check_limit(page_size)
    if int(n_rows) < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows!r}")
    return max(1, math.ceil(int(n_rows) / size))


def clamp_page(page: int, n_rows: int, page_size: int) -> int:
    """``page`` (1-based) moved into [1, n_pages]: a table that shrank keeps a valid page."""
    return int(min(max(1, int(page)), n_pages(n_rows, page_size)))


def page_bounds(page: int, n_rows: int, page_size: int) -> tuple[int, int]:
    """(start, stop) row positions of 1-based ``page`` (clamped): rows ``start:stop``."""
    size = _check_limit(page_size)
    p = clamp_page(page, n_rows, size)
    start = (p - 1) * size
    return start, min(int(n_rows), start + size)


def page_rows(table: pd.DataFrame, page: int, page_size: int) -> pd.DataFrame:
    """Rows of 1-based ``page`` (clamped into range) of ``table``, ``page_size`` a page."""
    start, stop = page_bounds(page, len(table), page_size)
    return table.iloc[start:stop]


def page_caption(page: int, n_rows: int, page_size: int, what: str = "rows") -> str:
    """"rows 26-50 of 10,000 (page 2 of 400)"."""
    start, stop = page_bounds(page, n_rows, page_size)
    if n_rows == 0:
        return f"no {what}"
    return (f"{what} {start + 1:,}-{stop:,} of {int(n_rows):,} "
            f"(page {clamp_page(page, n_rows, page_size)} of {n_pages(n_rows, page_size):,})")


def spread_sample(n: int, cap: int, *, seed: int = 0) -> np.ndarray:
    """(min(n, cap),) sorted int64 positions: every position when n <= cap, else a seeded
    uniform sample without replacement (what a scatter of n points draws)."""
    cap = _check_limit(cap)
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    if int(n) <= cap:
        return np.arange(int(n), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(int(n), size=cap, replace=False)).astype(np.int64)
