"""Bounded pickers and paging (echoaudit.pickers): what a page offers of a 10,000-video set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echoaudit.pickers import (
    MAX_OPTIONS,
    PAGE_SIZES,
    clamp_page,
    n_pages,
    options_with,
    page_bounds,
    page_caption,
    page_rows,
    search,
    search_table,
    shortlist,
    spread_sample,
)

NAMES = [f"SYN_0_{i:04d}" for i in range(1000)] + ["PHA4C_0007_03", "pha4c_0008_00"]
PATIENTS = [f"P{i % 7}" for i in range(len(NAMES))]


def test_search_is_case_insensitive_plain_text_and_bounded():
    m = search(NAMES, "  pha4c_000 ")
    assert m.names == ["PHA4C_0007_03", "pha4c_0008_00"] and m.total == 2 and m.more == 0
    assert m.sentence() == "2 videos match."
    m = search(NAMES, "SYN_0_0")  # 1000 hits, offered 200
    assert len(m.names) == MAX_OPTIONS and m.total == 1000 and m.more == 800
    assert m.names == NAMES[:MAX_OPTIONS]  # order kept
    assert "800 more: refine the search" in m.sentence()
    assert search(NAMES, "SYN_0_0[").total == 0  # a regex character is plain text
    assert search(NAMES, "nothing like it").sentence("videos") == "No videos match."
    empty = search(NAMES, "", limit=5)
    assert empty.names == NAMES[:5] and empty.total == len(NAMES)


def test_search_also_looks_at_the_patient():
    m = search(NAMES, "p3", also=PATIENTS, limit=10_000)
    assert m.total == sum(p == "P3" for p in PATIENTS)
    assert all(PATIENTS[NAMES.index(n)] == "P3" for n in m.names)
    with pytest.raises(ValueError, match=r"also must give one text per name \(1002\), got 3"):
        search(NAMES, "x", also=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"limit must be an integer >= 1, got 0"):
        search(NAMES, "x", limit=0)


def test_search_table_rows_in_order():
    t = pd.DataFrame({"train_video": ["a1", "B2", "c3"], "train_patient": ["X", "Y", "b"]})
    assert search_table(t, "b", ["train_video", "train_patient"])["train_video"].tolist() == ["B2", "c3"]
    assert search_table(t, " ", ["train_video"]) is t
    with pytest.raises(ValueError, match=r"no column \['nope'\]"):
        search_table(t, "a", ["nope"])


def test_shortlist_and_current_choice_kept():
    assert shortlist(["a", "b"], ["b", "c", "d"], limit=3) == ["a", "b", "c"]
    assert shortlist([], ("x" for _ in range(5))) == ["x"]
    valid = {"a", "b", "z"}
    assert options_with(["a", "b"], "z", valid) == ["z", "a", "b"]  # chosen elsewhere, kept on top
    assert options_with(["a", "b"], "a", valid) == ["a", "b"]
    assert options_with(["a", "b"], "gone", valid) == ["a", "b"]  # not a name any more: dropped
    assert options_with(["a"], ["z", "b", "a"], valid) == ["z", "b", "a"]


def test_pages_by_hand():
    assert n_pages(0, 25) == 1 and n_pages(25, 25) == 1 and n_pages(26, 25) == 2 and n_pages(10_000, 25) == 400
    assert page_bounds(2, 60, 25) == (25, 50) and page_bounds(3, 60, 25) == (50, 60)
    assert page_bounds(99, 60, 25) == (50, 60) and clamp_page(0, 60, 25) == 1  # out of range: clamped
    assert page_caption(2, 10_000, 25) == "rows 26-50 of 10,000 (page 2 of 400)"
    assert page_caption(1, 0, 25, "videos") == "no videos"
    t = pd.DataFrame({"v": range(60)})
    assert page_rows(t, 3, 25)["v"].tolist() == list(range(50, 60))
    assert PAGE_SIZES[0] >= 10 and list(PAGE_SIZES) == sorted(PAGE_SIZES)
    with pytest.raises(ValueError, match="n_rows must be >= 0"):
        n_pages(-1, 25)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 2_000), size=st.sampled_from(PAGE_SIZES + (1, 7)))
def test_pages_cover_every_row_once(n, size):
    pages = n_pages(n, size)
    rows = [r for p in range(1, pages + 1) for r in range(*page_bounds(p, n, size))]
    assert rows == list(range(n))  # a partition, in order
    assert all(page_bounds(p, n, size)[1] - page_bounds(p, n, size)[0] <= size for p in range(1, pages + 1))
    assert pages == 1 or page_bounds(pages, n, size)[1] - page_bounds(pages, n, size)[0] >= 1  # no empty last page


@settings(max_examples=100, deadline=None)
@given(names=st.lists(st.text(alphabet="abcAB_01", min_size=1, max_size=6), max_size=300),
       query=st.text(alphabet="abAB_0", max_size=3), limit=st.integers(1, 50))
def test_search_matches_a_plain_loop(names, query, limit):
    expected = [n for n in names if query.strip().lower() in n.lower()]
    m = search(names, query, limit=limit)
    assert m.total == len(expected) and m.names == expected[:limit]


def test_spread_sample():
    assert spread_sample(5, 10).tolist() == [0, 1, 2, 3, 4]
    s = spread_sample(10_000, 2_000, seed=3)
    assert len(s) == 2_000 == len(np.unique(s)) and (np.diff(s) > 0).all() and s.max() < 10_000
    assert np.array_equal(s, spread_sample(10_000, 2_000, seed=3))  # seeded
