"""Report: one click writes the meeting report (HTML, PNG figures, CSV tables) into
<workspace>/reports/<timestamp>/ and offers it as a zip."""

from pathlib import Path

import streamlit as st

import widgets
from echoaudit import report_files as R
from echoaudit.audit.scale import to_logit

ws = widgets.page_setup()
root, name = str(ws.root), widgets.synthetic_set(ws)
st.title("Meeting report")
if name is None:
    widgets.no_synthetic_set(ws, "to report on")
t = widgets.current_threshold(ws)
st.markdown(f"Synthetic set **{name}**, threshold **{to_logit(t):.2f}** re-ID logit (probability {t:.6f}; from the "
            "Privacy page). The report holds every "
            "headline number with its interval and one plain sentence, the figures, the tables and the model "
            "fingerprints.")
png = st.checkbox("Also write PNG figures (kaleido + Chromium)", value=True, key="report_png")
if st.button("Write the report", key="report_write", type="primary"):
    with st.status("Writing the report ...", expanded=True) as status:
        bar = st.progress(0.0, text="starting")
        out = R.report_folder(ws)
        paths = R.write_report(ws, out, synthetic=name, threshold=t, png=png,
                               progress=lambda f, m: bar.progress(float(f), text=m))
        status.update(label=f"Report written to {out}", state="complete")
    st.session_state["report_paths"] = {k: str(v) for k, v in paths.items()}

paths = st.session_state.get("report_paths")
if paths:
    folder = Path(paths["folder"])
    if paths.get("png_error"):
        st.warning(paths["png_error"] + " The HTML report and CSV tables were written.")
    st.success(f"Written to `{folder}`")
    st.download_button("Download the report (zip)", R.zip_folder(folder), file_name=f"echoaudit-{folder.name}.zip",
                       mime="application/zip", key="report_zip")
    st.download_button("Download report.html", Path(paths["html"]).read_bytes(), file_name="report.html",
                       mime="text/html", key="report_html")
    st.dataframe({"file": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())},
                 width="stretch")
