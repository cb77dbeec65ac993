"""Page speed at scale: every dashboard page's first render on a workspace whose synthetic
sets hold 10,000 videos each.

The scale workspace is made cheaply from a built one (default ``demo_workspace``, 32
videos a set) by :func:`make_scale_workspace`, into a temporary folder:

- copied as they are: manifest (then edited), data set FileList, index, models, real
  held-out scores and curves, ROC pairs, utility results, audit CSVs; the real data
  set's, the models' and every synthetic set's video files are hard links (symbolic
  links across file systems), so nothing is decoded or encoded;
- replicated to ``n`` videos per synthetic set, video ``i`` a copy of source video
  ``i mod m`` (m = the set's size) under a new name (the first m keep their names, the
  others are ``<name>_r<k>``, k = i div m): the FileList rows (the new name as FileName
  and as PatientID: one synthetic video, one "patient", as the generator writes them),
  the video files (links), and, with the query / video renamed, every per-video table:
  ``scores/synthetic_<set>.parquet`` (the top-k matches of each query, so the flags, best
  matches and coverage repeat the source's), ``temporal_<set>``, ``embeddings_<set>``,
  ``first_frames_<set>`` and, where the set has one, ``utility/<set>/
  utility_ef_agreement.csv``; manifest and generator.json ``n`` become ``n``.

A replica scores exactly as its source, so shares and coverage are those of the source
set; what grows is what a page must list, draw and compute over: n videos a set.

Timing (``streamlit.testing.v1.AppTest``, the way tests/test_app.py opens pages, with
$ECHOAUDIT_WORKSPACE pointing at the scale workspace). First, once, what a server does
once whatever the set's size (not counted): the imports (torch, diffusers, scipy,
plotly, SQLAlchemy, PyAV) and a first model forward pass. Then, for each page (and for
the states that list or compute the most: Inspect on a workspace video, Privacy /
Coverage / Utility of each other set), every Streamlit cache is cleared (the cached
Workspace too: its data sets, tables and models are opened again), a new session opens
the app (Home, the default page) and switches to the page; "first render" is that
switch's run, every table and figure of the page computed from nothing. "rerun" is the
next run of the same page (a widget moved: caches warm). Home's own first render is
timed from cleared caches. Then the report of the first set is written once (a button,
not a render): its time and the sizes of report.html and of the CSV tables.

One labelled line per page, the headline last:

    .venv/bin/python bench/page_speed.py                 # 10,000 videos a set, ~2 min on 2 cores
    .venv/bin/python bench/page_speed.py --n 100000      # the issue's upper end
    .venv/bin/python bench/page_speed.py --keep /tmp/ws10k   # keep the workspace (reuse with --workspace)
    .venv/bin/python bench/page_speed.py --workspace /tmp/ws10k --pages privacy --profile prof/   # cProfile
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")  # as scripts/test.sh and bench/echonet_scale.py: a 2-core machine
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np
import pandas as pd

PAGES = ["home", "inspect", "privacy", "coverage", "temporal", "utility", "report"]
FLOOR_S = 3.0

__all__ = ["make_scale_workspace", "replica_names", "time_pages", "PAGES", "FLOOR_S"]


def replica_names(names: list[str], n: int) -> tuple[list[str], np.ndarray]:
    """(n new names, (n,) int64 index of each one's source in ``names``): the first
    len(names) keep their names, video i >= m is ``<names[i % m]>_r<i // m>``."""
    m = len(names)
    if m == 0:
        raise ValueError("replica_names needs at least one source name, got none")
    src = np.arange(int(n), dtype=np.int64) % m
    out = [names[s] if i < m else f"{names[s]}_r{i // m}" for i, s in enumerate(src)]
    return out, src


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system: a symbolic link reads the same
        os.symlink(src.resolve(), dst)


def _copy_tree(src: Path, dst: Path, *, link_dirs: tuple[str, ...]) -> None:
    """Copy ``src`` to ``dst``; files under a folder named in ``link_dirs`` (videos,
    models) are links, never rewritten later (rewritten files are copies, so the source
    workspace can never change through a link)."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if rel.parts and rel.parts[0] == "reports":
            continue
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif any(part in link_dirs for part in rel.parts[:-1]):
            _link(path, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _rename(df: pd.DataFrame, column: str, names: list[str], n: int) -> pd.DataFrame:
    """The rows of ``df`` repeated for each replica, ``column`` renamed: rows of source
    video s appear once per replica of s, in replica order."""
    new, src = replica_names(names, n)
    by_name = {v: i for i, v in enumerate(names)}
    rows = df[column].astype(str).map(by_name)
    if rows.isna().any():  # rows of videos not in the FileList: left as they are
        df = df[rows.notna()]
        rows = rows[rows.notna()]
    order = np.argsort(rows.to_numpy(np.int64), kind="stable")
    df, rows = df.iloc[order].reset_index(drop=True), rows.to_numpy(np.int64)[order]
    starts = np.searchsorted(rows, np.arange(len(names)))
    ends = np.searchsorted(rows, np.arange(len(names)), side="right")
    take = np.concatenate([np.arange(starts[s], ends[s]) for s in src]) if len(df) else np.zeros(0, np.int64)
    owner = np.concatenate([np.full(ends[s] - starts[s], i) for i, s in enumerate(src)]) if len(df) else take
    out = df.iloc[take].reset_index(drop=True)
    out[column] = pd.array(np.asarray(new, dtype=object)[owner], dtype=df[column].dtype)
    return out


def _rewrite_parquet(path: Path, column: str, names: list[str], n: int) -> None:
    df = pd.read_parquet(path)
    out = _rename(df, column, names, n)
    path.unlink()  # a copy, but never write through whatever a path is
    out.to_parquet(path, index=False)


def make_scale_workspace(source: str | Path, dest: str | Path, n: int = 10_000,
                         sets: list[str] | None = None) -> dict:
    """Make ``dest``: the workspace ``source`` with each synthetic set in ``sets`` (default
    every one) replicated to ``n`` videos (see the module docstring for exactly what).

    Returns a dict: ``root`` (str), ``n`` (videos a set), ``sets`` (set -> source size),
    ``replicated`` (the files rewritten, relative to the root), ``seconds``."""
    t0 = time.perf_counter()
    source, dest = Path(source).resolve(), Path(dest).resolve()
    if not (source / "manifest.json").is_file():
        raise SystemExit(f"{source} is not a workspace (no manifest.json); build one with `echoaudit demo`")
    if dest.exists():
        shutil.rmtree(dest)
    _copy_tree(source, dest, link_dirs=("Videos", "models"))
    m = json.loads((dest / "manifest.json").read_text())
    sets = list(m.get("synthetic", {})) if sets is None else list(sets)
    scores = m.get("scores", {})
    rewritten, sizes = [], {}
    for name in sets:
        entry = m["synthetic"][name]
        folder = dest / entry["path"]
        table = pd.read_csv(folder / "FileList.csv", dtype={"FileName": str, "PatientID": str})
        names = table["FileName"].astype(str).tolist()
        sizes[name] = len(names)
        new, src = replica_names(names, n)
        rows = table.iloc[src].reset_index(drop=True)
        rows["FileName"] = new
        if "PatientID" in rows:
            rows["PatientID"] = new  # one synthetic video, one "patient", as the generator writes them
        videos = folder / "Videos"
        ext = {Path(p).stem: Path(p).suffix for p in os.listdir(videos)}
        for i in range(len(names), n):
            source_file = videos / f"{names[src[i]]}{ext[names[src[i]]]}"
            _link(os.path.realpath(source_file) if source_file.is_symlink() else source_file,
                  videos / f"{new[i]}{ext[names[src[i]]]}")
        (folder / "FileList.csv").unlink()
        rows.to_csv(folder / "FileList.csv", index=False)
        rewritten.append(f"{entry['path']}/FileList.csv")
        rel = scores.get(f"synthetic_{name}")
        if rel:
            _rewrite_parquet(dest / rel, "query", names, n)
            rewritten.append(rel)
        for key, column in (("temporal", "video"), ("video_embeddings", "video")):
            for rel in scores.get(key, []) or []:
                df = pd.read_parquet(dest / rel, columns=["set"])
                if (df["set"].astype(str) == name).all() and len(df):
                    _rewrite_parquet(dest / rel, column, names, n)
                    rewritten.append(rel)
        rel = (scores.get("first_frames") or {}).get(name)
        if rel and (dest / rel).is_file():
            _rewrite_parquet(dest / rel, "video", names, n)
            rewritten.append(rel)
        agreement = dest / "utility" / name / "utility_ef_agreement.csv"
        if agreement.is_file():
            df = _rename(pd.read_csv(agreement, dtype={"FileName": str}), "FileName", names, n)
            agreement.unlink()
            df.to_csv(agreement, index=False)
            rewritten.append(str(agreement.relative_to(dest)))
        entry["n"] = int(n)
        gen = folder / "generator.json"
        if gen.is_file():
            g = json.loads(gen.read_text())
            g["n"] = int(n)
            gen.unlink()
            gen.write_text(json.dumps(g, indent=2))
    (dest / "manifest.json").unlink()
    (dest / "manifest.json").write_text(json.dumps(m, indent=2))
    return {"root": str(dest), "n": int(n), "sets": sizes, "replicated": rewritten,
            "seconds": time.perf_counter() - t0}


def _clear_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def page_cases(root: str | Path, pages: list[str] | None = None) -> list[tuple[str, str, dict]]:
    """(label, page, session state set before the first run) of every screen timed: each
    page as it opens, plus the states that list or compute the most at scale: Inspect on
    a workspace video of the first set, Privacy and Utility of each other set (Utility of
    a set with results)."""
    from echoaudit.workspace import Workspace

    ws = Workspace(root)
    names = ws.synthetic_names
    cases = []
    for page in pages or PAGES:
        cases.append((page, page, {}))
        if page == "inspect" and names:
            cases.append(("inspect: a workspace video", page, {"inspect_source": "From the workspace",
                                                               "inspect_set": names[0]}))
        if page in ("privacy", "coverage", "utility"):
            cases += [(f"{page}: set {s}", page, {"synthetic_set": s}) for s in names[1:]]
    return cases


def time_pages(root: str | Path, pages: list[str] | None = None, *, timeout: float = 600.0,
               cases: list[tuple[str, str, dict]] | None = None) -> dict:
    """First render and rerun (seconds) of each page (or each case of :func:`page_cases`)
    on the workspace at ``root``, each from cleared caches; see the module docstring.
    Returns label -> dict(first, rerun, home, exception (list of str), at (the AppTest,
    for the caller's checks))."""
    from streamlit.testing.v1 import AppTest

    os.environ["ECHOAUDIT_WORKSPACE"] = str(root)
    app = str(ROOT / "app.py")
    out = {}
    for label, page, state in cases or [(p, p, {}) for p in pages or PAGES]:
        _clear_caches()
        at = AppTest.from_file(app, default_timeout=timeout)
        for k, v in state.items():
            at.session_state[k] = v
        t0 = time.perf_counter()
        at.run()
        home = time.perf_counter() - t0
        if page == "home":
            first = home
        else:
            t0 = time.perf_counter()
            at.switch_page(f"pages/{page}.py").run()
            first = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        rerun = time.perf_counter() - t0
        out[label] = {"first": first, "rerun": rerun, "home": home,
                     "exception": [str(e.value)[:300] for e in at.exception], "at": at}
    return out


def _quiet_streamlit() -> None:
    """Streamlit's bare-mode warnings (one per cache call outside a server) hide the lines."""
    os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # AppTest re-reads the config
    from streamlit.logger import set_log_level

    set_log_level("error")
    import logging

    for name in ("streamlit.runtime.scriptrunner_utils.script_run_context",
                 "streamlit.runtime.caching.cache_data_api", "streamlit.runtime.caching.cache_resource_api"):
        logging.getLogger(name).disabled = True  # bare-mode notices, one per cache call


def warm_imports() -> float:
    """Import what a server imports once (torch, diffusers, the engine, plotly, scipy, the
    decision store's SQLAlchemy / Alembic, PyAV): a process start, not a page's render.
    Returns the seconds it took."""
    t0 = time.perf_counter()
    import plotly.graph_objects as go
    import scipy.stats  # noqa: F401
    import torch  # noqa: F401

    import echoaudit.engine  # noqa: F401
    import echoaudit.models.reid  # noqa: F401
    import echoaudit.models.vae  # noqa: F401
    import echoaudit.report  # noqa: F401
    import echoaudit.media  # noqa: F401
    import echoaudit.review.view  # noqa: F401
    import alembic.runtime.migration  # noqa: F401 - the decision store's schema check
    import av  # noqa: F401

    go.Figure().update_layout(template="plotly_white")  # plotly builds its templates on first use
    return time.perf_counter() - t0


def warm_process(root: str | Path) -> float:
    """:func:`warm_imports`, then one query of a held-out video on a Workspace opened for
    it and dropped: torch sets up its kernels on a process's first forward pass (~1 s
    on 2 cores). Both happen once per server whatever the number of videos; every cache
    is cleared again before each page. Returns the seconds it took."""
    t0 = time.perf_counter()
    warm_imports()
    from echoaudit.workspace import Workspace

    ws = Workspace(root)
    if len(ws.heldout):
        v = ws.heldout.load(0, size=ws.size)
        ws.query(v.frames, "warm-up", fps=v.fps)
    return time.perf_counter() - t0


def _profiled(root: Path, case: tuple[str, str, dict], folder: Path) -> dict:
    """time_pages of one case under cProfile; AppTest runs the script in a thread of its
    own, so every thread started meanwhile is profiled. Writes <label>.prof and .txt."""
    import cProfile
    import pstats
    import re
    import threading

    profs = []

    def hook(*_):
        prof = cProfile.Profile()
        profs.append(prof)
        prof.enable()  # replaces this hook in that thread

    threading.setprofile(hook)
    try:
        res = time_pages(root, cases=[case])
    finally:
        threading.setprofile(None)
    stats = None
    for prof in profs:
        try:
            prof.create_stats()
        except Exception:  # noqa: BLE001, S112 - a thread that never ran: nothing to add
            continue
        stats = pstats.Stats(prof) if stats is None else (stats.add(prof) or stats)
    if stats is not None:
        stem = re.sub(r"[^a-z0-9]+", "_", case[0].lower()).strip("_")
        stats.dump_stats(folder / f"{stem}.prof")
        with open(folder / f"{stem}.txt", "w") as f:
            stats.stream = f
            stats.sort_stats("cumulative").print_stats(80)
    return res


def time_report(root: Path) -> tuple[float, dict]:
    """Seconds to write the report of the first synthetic set (no PNGs) and the sizes
    (bytes) of report.html and of the tables folder."""
    from echoaudit.report_files import write_report
    from echoaudit.workspace import Workspace

    ws = Workspace(root)
    with tempfile.TemporaryDirectory(prefix="echoaudit-report-") as tmp:
        t0 = time.perf_counter()
        paths = write_report(ws, Path(tmp) / "report", png=False)
        seconds = time.perf_counter() - t0
        tables = sum(p.stat().st_size for p in (Path(tmp) / "report" / "tables").glob("*.csv"))
        return seconds, {"html": paths["html"].stat().st_size, "tables": tables,
                         "flags_rows": len(pd.read_csv(paths["table_flags"], usecols=[0]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=str(ROOT / "demo_workspace"), help="the built workspace to replicate")
    ap.add_argument("--n", type=int, default=10_000, help="videos per synthetic set")
    ap.add_argument("--sets", nargs="*", default=None, help="synthetic sets to replicate (default: every one)")
    ap.add_argument("--workspace", default=None, help="time this existing workspace instead of making one")
    ap.add_argument("--keep", default=None, help="make the scale workspace here and keep it")
    ap.add_argument("--pages", nargs="*", default=None, choices=PAGES)
    ap.add_argument("--no-report", action="store_true", help="do not time writing the report")
    ap.add_argument("--profile", default=None, help="write a cProfile of each page's first render to this folder")
    args = ap.parse_args()

    _quiet_streamlit()
    tmp = None
    if args.workspace:
        root = Path(args.workspace).resolve()
        print(f"workspace: {root} (as it is)")
    else:
        if args.keep:
            dest = Path(args.keep)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="echoaudit-scale-")
            dest = Path(tmp.name) / "ws"
        info = make_scale_workspace(args.source, dest, args.n, args.sets)
        root = Path(info["root"])
        sizes = ", ".join(f"{k} {v} -> {info['n']:,}" for k, v in info["sets"].items())
        print(f"workspace: {root}, made in {info['seconds']:.1f} s from {args.source}")
        print(f"replicated synthetic sets: {sizes} videos (video i = source video i mod m, named <source>_r<i div m>; "
              "video files hard-linked)")
        print(f"replicated tables (rows of each source video repeated under its replicas' names): "
              f"{', '.join(info['replicated'])}")
    from echoaudit.workspace import Workspace

    ws = Workspace(root)
    counts = {s: len(pd.read_csv(ws.path(ws.manifest["synthetic"][s]["path"]) / "FileList.csv", usecols=[0]))
              for s in ws.synthetic_names}
    n_max = max(counts.values()) if counts else 0
    print(f"synthetic videos: {', '.join(f'{k} {v:,}' for k, v in counts.items())} "
          f"(training videos {len(ws.train)}, held-out {len(ws.heldout)})")
    print(f"process start (imports of torch, diffusers, scipy, plotly, SQLAlchemy, PyAV; the first model forward "
          f"pass; once per server at any set size): {warm_process(root):.1f} s, not counted below")
    cases = page_cases(root, args.pages)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        res = {}
        for case in cases:
            res.update(_profiled(root, case, Path(args.profile)))
    else:
        res = time_pages(root, cases=cases)
    for label, page, _ in cases:
        r = res[label]
        err = f"  EXCEPTION: {r['exception']}" if r["exception"] else ""
        extra = f" (after Home {r['home']:.2f} s)" if page != "home" else ""
        print(f"page {label}: {r['first']:.2f} s first render{extra}, {r['rerun']:.2f} s rerun{err}")
    if not args.no_report and ws.synthetic_names:
        seconds, size = time_report(root)
        print(f"report of {ws.synthetic_names[0]} (button on the Report page, not a render): written in {seconds:.1f} s; "
              f"report.html {size['html'] / 2**20:.2f} MiB, tables/*.csv {size['tables'] / 2**20:.2f} MiB "
              f"(flags.csv {size['flags_rows']:,} rows)")
    slowest = max(res, key=lambda k: res[k]["first"])
    ok = all(not r["exception"] for r in res.values())
    print(f"headline: slowest page {slowest} {res[slowest]['first']:.2f} s (floor < {FLOOR_S:g} s) on a workspace "
          f"with {n_max:,} synthetic videos a set ({len(counts)} sets){'' if ok else '; SOME PAGES RAISED'}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
