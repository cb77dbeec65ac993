"""Shared Streamlit pieces of the EchoAudit dashboard: the cached workspace (or the panel
that builds the demo one), the sidebar choices every page shares, and st.cache_data
wrappers around ``echoaudit.report``'s views, keyed on plain values (the workspace
folder as a string plus widget values). No maths here.

Session keys shared between pages: ``synthetic_set`` (sidebar selectbox, mirrored in
``audit_synthetic`` so it survives page switches) and
``audit_threshold`` (the threshold set on the Privacy page, a probability, used by Inspect,
Coverage and Report). Page-only keys carry the page's prefix (``privacy_threshold``: the
slider, in re-ID logit units; ``privacy_rule``, ``inspect_*``).

Several people can use one server at once. What is shared between their sessions is
read-only: the Workspace (``st.cache_resource``; pages never mutate it or its tables) and
``st.cache_data`` results of workspace data, which Streamlit hands out as copies. Anything
derived from an upload (its decoded frames, its scores, the side-by-side MP4 that shows
it) is cached with ``scope="session"`` (:data:`UPLOAD_CACHES`), so it is never served to
another session and is dropped when its session disconnects; what Streamlit itself keeps
of a closed session (the uploaded file, the MP4 it served) goes with
:func:`forget_closed_sessions`. Uploads are decoded in memory; the log gets one line per
upload with a sha256 prefix and the byte size, never the file's name or content (see
SECURITY.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from echoaudit import pickers
from echoaudit import report as R
from echoaudit.audit.scale import from_logit, to_logit
from echoaudit.errors import EchoAuditError
from echoaudit.workspace import Workspace

__all__ = [
    "workspace_root", "workspace_version", "open_workspace", "require_workspace", "page_setup", "build_panel",
    "forget_closed_sessions",
    "pending_panel", "no_synthetic_set", "sidebar", "synthetic_set",
    "calibrated_threshold", "calibration_data", "current_threshold", "set_threshold", "privacy_data", "auc_data",
    "coverage_data", "utility_data", "filter_data",
    "temporal_data", "pca_data", "thumbnails", "training_frames", "query_video", "generate_video",
    "workspace_video", "tiled_mp4", "selected_videos", "show_error", "upload_digest", "read_upload", "UPLOAD_CACHES",
    "best_scores", "temporal_numbers", "video_picker", "table_page",
]

log = logging.getLogger("echoaudit.dashboard")
if not log.handlers and not logging.getLogger().handlers:
    # `streamlit run` configures only Streamlit's own loggers: print ours the same way.
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname) -7s %(name)s: %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)


def workspace_root() -> str:
    """The workspace folder: $ECHOAUDIT_WORKSPACE (default ``demo_workspace``), absolute."""
    return str(Path(os.environ.get("ECHOAUDIT_WORKSPACE", "demo_workspace")).resolve())


def workspace_version(root: str) -> int:
    """Changes whenever the workspace's manifest is rewritten (a synthetic set added)."""
    try:
        return (Path(root) / "manifest.json").stat().st_mtime_ns
    except FileNotFoundError:
        return 0


@st.cache_resource(show_spinner="Opening the workspace ...", max_entries=4)
def _open_workspace(root: str, version: int) -> Workspace:
    return Workspace(root)


def open_workspace(root: str) -> Workspace:
    """One Workspace per folder and manifest version, shared by every session; never
    mutated by the app. A build that adds a synthetic set rewrites the manifest, and the
    next call opens the new version."""
    return _open_workspace(root, workspace_version(root))


def show_error(exc: BaseException) -> None:
    """A user-caused error as plain text (no stack trace)."""
    st.error(str(exc) or type(exc).__name__)


def require_workspace() -> Workspace:
    """The cached workspace; when the folder holds none yet, the build panel (live progress
    of a running build, or the button that starts one), then st.stop()."""
    root = workspace_root()
    if not Workspace.exists(root):
        build_panel(root)
        st.stop()
    try:
        return open_workspace(root)
    except EchoAuditError as exc:
        show_error(exc)
        st.stop()


def _status_line(status: dict) -> str:
    import time

    elapsed = max(0.0, (status.get("updated") or time.time()) - (status.get("started") or time.time()))
    return f"{100 * float(status.get('fraction', 0)):.0f} % · {status.get('message', '')} · {elapsed:.0f} s"


def build_panel(root: str) -> None:
    """No workspace in ``root`` yet: follow the build that is making it, or offer to start one.

    The build runs in its own process (echoaudit.buildjob); this panel only reads its status
    file, once a second, and opens the dashboard as soon as the workspace is usable.
    """
    from echoaudit import buildjob

    st.title("EchoAudit")
    status = buildjob.read_status(root)
    if status and status.get("state") == "running":
        st.info("Building the phantom demo workspace: phantom patients, the index of training frames and the "
                "calibration on real held-out videos. The dashboard opens by itself when they are ready; the "
                "demo's synthetic sets are generated after that, in the background.")
        st.session_state["_seen_version"] = workspace_version(root)
        _build_progress(root)
        return
    st.warning(f"No EchoAudit workspace in `{root}` (no manifest.json).")
    if status and status.get("state") == "failed":
        st.error(f"The last build failed: {status.get('error', 'unknown error')} (log: `{Path(root) / buildjob.LOG}`)")
    elif status and status.get("state") == "interrupted":
        st.warning(f"A build stopped at {100 * float(status.get('fraction', 0)):.0f} % ({status.get('message', '')}); "
                   "starting again resumes it.")
    st.markdown(
        "A workspace holds the data set, the models, the index of training frames and the audit "
        "scores. Build the phantom demo here (from the checkpoints in `assets/`; the dashboard is usable "
        "after a minute or two on a CPU, the synthetic sets follow), or point `ECHOAUDIT_WORKSPACE` at an "
        "existing workspace and restart."
    )
    if st.button("Build the demo workspace", key="build_demo", type="primary"):
        buildjob.start_demo_build(root)
        st.rerun()


@st.fragment(run_every=1.0)
def _build_progress(root: str) -> None:
    """Live progress of the build making ``root``; reruns the app when the workspace (or a
    new synthetic set) is ready, or when the build stops."""
    from echoaudit import buildjob

    status = buildjob.read_status(root) or {}
    st.progress(float(min(1.0, max(0.0, status.get("fraction", 0.0)))), text=_status_line(status))
    if workspace_version(root) != st.session_state.get("_seen_version") or status.get("state") != "running":
        st.rerun()


def pending_panel(ws: Workspace) -> None:
    """Synthetic sets still to come (sidebar): the running build's progress, or a button
    that resumes a stopped build."""
    from echoaudit import buildjob

    root = str(ws.root)
    st.session_state["_seen_version"] = workspace_version(root)
    status = buildjob.read_status(root)
    todo = ", ".join([f"synthetic set {p}" for p in ws.pending] + [f"EF utility of {u}" for u in ws.utility_pending])
    if status and status.get("state") == "running":
        st.caption(f"Still to come from the build: {todo}")
        _build_progress(root)
    else:
        st.caption(f"Not made yet: {todo}")
        if status and status.get("state") == "failed":
            st.error(f"The build failed: {status.get('error', 'unknown error')}")
        if st.button("Make them now", key="resume_build"):
            buildjob.start_demo_build(root)
            st.rerun()


# ---------------------------------------------------------------------------------------
# choices shared by every page


def page_setup() -> Workspace:
    """Top of every page: the workspace (or the build panel) and the shared sidebar.

    Pages call this rather than relying on app.py for the sidebar, so a page also works
    when run on its own (AppTest.switch_page runs the page file without the entry file).
    """
    forget_closed_sessions()
    ws = require_workspace()
    sidebar(ws)
    return ws


_forget_failed: list[str] = []  # said once per process


def forget_closed_sessions() -> int:
    """Drop what Streamlit still holds of sessions that are gone: their uploaded files and
    media (the side-by-side MP4 that shows an upload). Returns how many sessions it cleared.

    Streamlit (1.67) frees a session's files when the session is shut down, but a browser
    tab that is simply closed is kept for a reconnection (``server.disconnectedSessionTTL``,
    120 s) and then forgotten without a shutdown, so its upload would stay in the server's
    memory until the server stops. Every page run calls this, so the next run of any
    session clears it. Reads Streamlit internals; if they change, it does nothing."""
    try:
        from streamlit.runtime import Runtime

        if not Runtime.exists():  # bare mode (AppTest has a mock one: AttributeError below)
            return 0
        rt = Runtime.instance()
        alive = {info.session.id for info in rt._session_mgr.list_sessions()}  # connected or reconnectable
        uploads, media = rt.uploaded_file_mgr, rt.media_file_mgr
        gone_uploads = [sid for sid in list(uploads.file_storage) if sid not in alive]
        gone_media = [sid for sid in list(media._files_by_session_and_coord) if sid not in alive]
        for sid in gone_uploads:
            uploads.remove_session_files(sid)
        for sid in gone_media:
            media.clear_session_refs(sid)
        if gone_media:
            media.remove_orphaned_files()
    except Exception as exc:  # noqa: BLE001 - Streamlit's internals moved (or AppTest's mock): keep working
        if not _forget_failed:
            _forget_failed.append(type(exc).__name__)
            log.debug("cannot clear closed sessions' files here: %s", type(exc).__name__)
        return 0
    return len(set(gone_uploads) | set(gone_media))


def no_synthetic_set(ws: Workspace, what: str = "to audit") -> None:
    """The page's message when the workspace has no synthetic set (yet), then st.stop()."""
    if ws.pending:
        st.info(f"The synthetic sets ({', '.join(ws.pending)}) are still being generated: see the progress in "
                "the sidebar. This page fills in as soon as the first one is audited.")
    else:
        st.info(f"This workspace has no synthetic set {what}.")
    st.stop()


def sidebar(ws: Workspace) -> None:
    """Synthetic-set selector and the threshold in use, in the sidebar."""
    with st.sidebar:
        names = ws.synthetic_names
        if names:
            # Widget state does not survive a page switch by itself: restore it from a plain key.
            if st.session_state.get("synthetic_set") not in names:
                kept = st.session_state.get("audit_synthetic")
                st.session_state["synthetic_set"] = kept if kept in names else names[0]
            chosen = st.selectbox("Synthetic set", names, key="synthetic_set",
                                  help="The generator's output audited on the Privacy, Coverage and Report pages.")
            st.session_state["audit_synthetic"] = chosen
        t = current_threshold(ws)
        st.caption(f"Workspace `{Path(ws.root).name}` · threshold {to_logit(t):.2f} (re-ID logit)")
        if ws.pending or ws.utility_pending:
            pending_panel(ws)


def synthetic_set(ws: Workspace) -> str | None:
    names = ws.synthetic_names
    chosen = st.session_state.get("synthetic_set", st.session_state.get("audit_synthetic"))
    return chosen if chosen in names else (names[0] if names else None)


@st.cache_data(show_spinner=False)
def calibrated_threshold(root: str, percentile: float = 95.0, rule: str | None = None) -> dict:
    """The calibration of ``rule`` (default: held-out-to-train) as a dict: value
    (probability), logit, bootstrap interval, measured false-flag rate ``check``, ``sentence``."""
    return open_workspace(root).calibration(percentile, rule).to_dict()


def calibration_data(root: str, synthetic: str | None, percentile: float = 95.0) -> dict:
    """Both rules' calibrations, their comparison table and the slider's logit range."""
    return _calibration_data(root, workspace_version(root), synthetic, percentile)


@st.cache_data(show_spinner="Calibrating the threshold ...", max_entries=8)
def _calibration_data(root: str, version: int, synthetic: str | None, percentile: float) -> dict:
    return R.calibration_view(open_workspace(root), synthetic, percentile=percentile)


def current_threshold(ws: Workspace) -> float:
    """The threshold (a probability) chosen on the Privacy page, else the calibrated default."""
    # The slider's own key is already updated when a rerun starts (audit_threshold only after
    # the slider line runs), so the sidebar shows the value the page is about to use.
    t = st.session_state.get("privacy_threshold")
    if t is not None:
        return from_logit(float(t))
    t = st.session_state.get("audit_threshold")
    if t is not None:
        return float(t)
    return float(calibrated_threshold(str(ws.root))["value"])


def set_threshold(value: float) -> None:
    """Share the threshold (a probability) with the other pages."""
    st.session_state["audit_threshold"] = float(value)


# ---------------------------------------------------------------------------------------
# cached tables (plain arguments only)


@st.cache_data(show_spinner="Flagging synthetic videos ...")
def privacy_data(root: str, synthetic: str, threshold: float) -> dict:
    return R.privacy_view(open_workspace(root), synthetic, threshold)


def filter_data(root: str, synthetic: str, threshold: float) -> list[dict]:
    """Each second filter's verdicts beside the workspace filter's at ``threshold``
    (:func:`echoaudit.filters.filters_view`); read again when a filter is added."""
    return _filter_data(root, workspace_version(root), synthetic, threshold)


@st.cache_data(show_spinner="Comparing the privacy filters ...", max_entries=16)
def _filter_data(root: str, version: int, synthetic: str, threshold: float) -> list[dict]:
    from echoaudit.filters import filters_view

    return filters_view(open_workspace(root), synthetic, threshold)


@st.cache_data(show_spinner="Bootstrapping the ROC AUC ...")
def auc_data(root: str) -> dict | None:
    return R.reid_auc(open_workspace(root))


@st.cache_data(show_spinner="Computing coverage ...")
def coverage_data(root: str, synthetic: str) -> dict:
    return R.coverage_view(open_workspace(root), synthetic)


def utility_data(root: str, synthetic: str) -> dict | None:
    """The downstream-utility results of a set (``echoaudit.utility_view.utility_results``),
    None when not computed yet; read again whenever ``eval utility`` rewrites them."""
    from echoaudit.utility_view import FILES, utility_folder

    folder = utility_folder(root, synthetic)
    stamp = tuple((folder / f).stat().st_mtime_ns if (folder / f).exists() else 0 for f in FILES.values())
    return _utility_data(root, synthetic, stamp)


@st.cache_data(show_spinner=False, max_entries=8)
def _utility_data(root: str, synthetic: str, stamp: tuple) -> dict | None:
    from echoaudit.utility_view import utility_results

    return utility_results(root, synthetic)


def temporal_data(root: str) -> dict:
    return _temporal_data(root, workspace_version(root))


@st.cache_data(show_spinner=False, max_entries=4)
def _temporal_data(root: str, version: int) -> dict:
    return R.temporal_view(open_workspace(root))


def temporal_numbers(root: str, measure: str) -> pd.DataFrame:
    """One row per set of :func:`echoaudit.report.temporal_set_numbers` (bootstraps over
    every video of a set: computed once per workspace and measure, not on every rerun)."""
    return _temporal_numbers(root, workspace_version(root), measure)


@st.cache_data(show_spinner=False, max_entries=8)
def _temporal_numbers(root: str, version: int, measure: str) -> pd.DataFrame:
    summary = _temporal_data(root, version)["summary"]
    rows = []
    if not summary.empty:
        for set_name in summary.loc[summary["measure"] == measure, "set"].unique():
            n = R.temporal_set_numbers(summary, set_name, measure)
            if n is not None:
                rows.append(n)
    return pd.DataFrame(rows)


def best_scores(root: str, set_name: str) -> pd.DataFrame:
    """Each video of the held-out set (``"heldout"``) or a synthetic set with its best
    training match: query, train_video, train_patient, score (probability), highest
    score first (ties by name); what a video picker offers first."""
    return _best_scores(root, workspace_version(root), set_name)


@st.cache_data(show_spinner=False, max_entries=16)
def _best_scores(root: str, version: int, set_name: str) -> pd.DataFrame:
    from echoaudit.audit.privacy import best_matches

    ws = open_workspace(root)
    if set_name == "heldout":
        best = best_matches(ws.heldout_scores, queries=ws.heldout.names)
    else:
        best = best_matches(ws.synthetic_scores(set_name), queries=ws.synthetic(set_name).names)
    return best.sort_values(["score", "query"], ascending=[False, True], kind="mergesort").reset_index(drop=True)


def pca_data(root: str) -> pd.DataFrame:
    return _pca_data(root, workspace_version(root))


@st.cache_data(show_spinner=False, max_entries=4)
def _pca_data(root: str, version: int) -> pd.DataFrame:
    from echoaudit.figures import pca_coordinates

    return pca_coordinates(open_workspace(root).video_embeddings)


@st.cache_data(show_spinner="Making thumbnails ...", max_entries=64)
def thumbnails(root: str, set_name: str, names: tuple[str, ...]) -> dict[str, str]:
    """Data-URI thumbnails of videos of the training set (``"train"``), the held-out set
    (``"heldout"``) or a synthetic set (its name)."""
    ws = open_workspace(root)
    ds = {"train": ws.train, "heldout": ws.heldout}.get(set_name) or ws.synthetic(set_name)
    from echoaudit.media import video_thumbnails

    return video_thumbnails(ds, list(names))


@st.cache_data(show_spinner=False, max_entries=64)
def training_frames(root: str, name: str) -> np.ndarray:
    ws = open_workspace(root)
    return ws.train.load(name, size=ws.size).frames


@st.cache_data(show_spinner=False, max_entries=64)
def workspace_video(root: str, set_name: str, name: str) -> tuple[np.ndarray, float]:
    ws = open_workspace(root)
    ds = ws.heldout if set_name == "heldout" else ws.synthetic(set_name)
    v = ds.load(name, size=ws.size)
    return v.frames, v.fps


def query_video(root: str, frames: np.ndarray, name: str, fps: float | None = None, *, upload: bool = False):
    """VideoScores of (T, size, size) frames in [0, 1] (cached on the frames' content);
    with ``fps``, conformed to the workspace's clip spec first (see Workspace.query).
    ``upload=True``: the frames come from a user's upload, so the result is cached for
    this session only."""
    return (_query_upload if upload else _query_shared)(root, frames, name, fps)


def _query(root: str, frames: np.ndarray, name: str, fps: float | None):
    return open_workspace(root).query(frames, name, fps=fps)


@st.cache_data(show_spinner="Scoring the video against the training set ...", max_entries=16)
def _query_shared(root: str, frames: np.ndarray, name: str, fps: float | None):
    return _query(root, frames, name, fps)


@st.cache_data(show_spinner="Scoring the video against the training set ...", max_entries=2, scope="session")
def _query_upload(root: str, frames: np.ndarray, name: str, fps: float | None):
    return _query(root, frames, name, fps)


@st.cache_data(show_spinner=False, max_entries=16)
def generate_video(root: str, generator: str, seed: int, ef: float | None, steps: int) -> np.ndarray:
    """(T, H, W) uint8 frames of one generated video."""
    frames, _ = open_workspace(root).generate(generator, n=1, seed=seed, ef=ef, steps=steps)
    return np.asarray(frames)[0]


def tiled_mp4(videos: tuple[np.ndarray, ...], captions: tuple[str, ...], fps: float, *, upload: bool = False) -> bytes:
    """One H.264 MP4 of the tiled videos, so the query and its matches loop in step.
    ``upload=True``: a tile shows a user's upload, so the MP4 is cached for this session only."""
    return (_tiled_upload if upload else _tiled_shared)(videos, captions, fps)


def _tiled(videos: tuple[np.ndarray, ...], captions: tuple[str, ...], fps: float) -> bytes:
    from echoaudit.data.video import video_to_mp4_bytes
    from echoaudit.media import tile_videos

    return video_to_mp4_bytes(tile_videos(list(videos), list(captions)), fps)


@st.cache_data(show_spinner="Rendering the side-by-side video ...", max_entries=16)
def _tiled_shared(videos: tuple[np.ndarray, ...], captions: tuple[str, ...], fps: float) -> bytes:
    return _tiled(videos, captions, fps)


@st.cache_data(show_spinner="Rendering the side-by-side video ...", max_entries=2, scope="session")
def _tiled_upload(videos: tuple[np.ndarray, ...], captions: tuple[str, ...], fps: float) -> bytes:
    return _tiled(videos, captions, fps)


# ---------------------------------------------------------------------------------------
# uploads: decoded in memory, cached per session, logged by hash


def upload_digest(data: bytes) -> str:
    """The first 16 hex digits of the upload's sha256: what the log says about an upload."""
    return hashlib.sha256(data).hexdigest()[:16]


def read_upload(up, size: int) -> tuple[np.ndarray, float, str]:
    """(frames (T, size, size) float32 in [0, 1], fps, sha256 prefix) of an ``st.file_uploader``
    file, decoded from its bytes in memory (nothing is written to disk) and cached for this
    session only. The type comes from the name's extension; the name itself is neither
    logged nor cached. Raises VideoError (EchoAuditError) for a file that is no usable video."""
    data = up.getvalue()
    extension = "." + str(up.name).rsplit(".", 1)[-1].lower()
    digest = upload_digest(data)
    logged = st.session_state.setdefault("_logged_uploads", set())
    if digest not in logged:  # once per upload and session, whatever the caches hold
        logged.add(digest)
        log.info("upload sha256:%s %d bytes", digest, len(data))
    try:
        return _decode_upload(data, extension, int(size))
    except EchoAuditError as exc:
        log.info("upload sha256:%s rejected (%s)", digest, type(exc).__name__)
        raise


@st.cache_data(show_spinner="Reading the video ...", max_entries=2, scope="session")
def _decode_upload(data: bytes, extension: str, size: int) -> tuple[np.ndarray, float, str]:
    from echoaudit.data.video import load_video

    video = load_video(data, extension=extension, size=size)
    return video.frames, video.fps, upload_digest(data)


#: The st.cache_data functions whose values derive from a user's upload: all session-scoped.
UPLOAD_CACHES = (_decode_upload, _query_upload, _tiled_upload)


def selected_videos(event) -> list[str]:
    """Video names (``customdata``) of the points picked in a plotly selection event."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return []
    out = []
    for p in points:
        name = p.get("customdata")
        if isinstance(name, (list, tuple)):
            name = name[0] if name else None
        if name is not None and name not in out:
            out.append(str(name))
    return out


# ---------------------------------------------------------------------------------------
# bounded pickers and paged tables (sets of 10,000-100,000 videos)


def video_picker(label: str, names, shortlisted, *, key: str, also=None, shortlist_note: str = "",
                 format_func=str, help: str | None = None, what: str = "videos", columns=None) -> str | None:
    """A selectbox that never lists a whole set: the short list first (``shortlisted``,
    at most :data:`echoaudit.pickers.MAX_OPTIONS`), or, once something is typed in the
    search box (session key ``<key>_search``), the names (or ``also``: their patients)
    that contain it, at most MAX_OPTIONS with a "refine the search" note. The current
    choice (``st.session_state[key]``, e.g. set by another page) stays offered while it
    is a name of ``names``. Returns the chosen name, None when nothing is offered.

    ``columns``: two containers (search box, selectbox); default: two new columns."""
    search_col, select_col = columns if columns is not None else st.columns([1, 2])
    query = search_col.text_input(f"Find a {what.removesuffix('s')}", key=f"{key}_search",
                                  placeholder="part of a name or patient ID",
                                  help=f"Type part of a name (or patient ID) to find any of the {len(names):,} {what}.")
    if query.strip():
        found = pickers.search(names, query, also=also)
        options, note = found.names, found.sentence(what)
    else:
        options = pickers.shortlist(shortlisted)
        note = (f"{shortlist_note} ({len(options):,} of {len(names):,} {what} offered)" if len(options) < len(names)
                else "")
    current = st.session_state.get(key)
    if current is not None and current not in options:
        options = pickers.options_with(options, current, set(names))
    if not options:
        select_col.selectbox(label, ["(none)"], key=f"{key}_empty", disabled=True, help=help)
        st.caption(note)
        return None
    if current not in options:
        st.session_state[key] = options[0]
    chosen = select_col.selectbox(label, options, key=key, format_func=format_func, help=help)
    if note:
        st.caption(note)
    return chosen


def table_page(table: pd.DataFrame, *, key: str, what: str = "rows", csv_name: str | None = None) -> pd.DataFrame:
    """The rows of ``table`` to draw now: the whole table when it fits one page of the
    smallest size; else a pager (rows per page, page number: session keys ``<key>_size``
    and ``<key>_page``) with a download of the whole table as CSV (``csv_name``)."""
    n = len(table)
    if n <= pickers.PAGE_SIZES[0]:
        return table
    c1, c2, c3, c4 = st.columns([1, 1, 2, 1])
    size = int(c1.selectbox("Rows per page", pickers.PAGE_SIZES, key=f"{key}_size"))
    pages = pickers.n_pages(n, size)
    page_key = f"{key}_page"
    if page_key in st.session_state:
        st.session_state[page_key] = pickers.clamp_page(st.session_state[page_key], n, size)
    page = int(c2.number_input("Page", min_value=1, max_value=pages, step=1, key=page_key))
    c3.caption(pickers.page_caption(page, n, size, what))
    if csv_name:
        c4.download_button("All rows (CSV)", data=lambda: table.to_csv(index=False).encode(), file_name=csv_name,
                           mime="text/csv", key=f"{key}_csv")
    return pickers.page_rows(table, page, size)
