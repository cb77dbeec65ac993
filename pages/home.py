"""Home: what this workspace holds (data, models, index, synthetic sets, build)."""

import pandas as pd
import streamlit as st

import widgets

ws = widgets.page_setup()
m = ws.manifest
st.title("EchoAudit")
st.markdown(
    "Audit of synthetic echocardiography videos: **privacy** (does a synthetic video re-identify a "
    "training patient?), **coverage** (how much of the training set does the generator reproduce?) "
    "and **temporal consistency** (does a video stay one patient?). Method: Dombrowski, Reynaud & Kainz, "
    "arXiv 2411.04956."
)

st.subheader("Data set")
table = ws.dataset.table
splits = (table.groupby("Split").agg(videos=("FileName", "size"), patients=("PatientID", "nunique"),
                                     mean_EF=("EF", "mean")).reindex(["TRAIN", "VAL", "TEST"]).dropna(how="all")
          .rename(columns={"mean_EF": "mean EF (%)"}))
c1, c2, c3, c4 = st.columns(4)
c1.metric("Training videos", len(ws.train))
c2.metric("Held-out videos (VAL + TEST)", len(ws.heldout))
c3.metric("Patients", int(table["PatientID"].nunique()))
c4.metric("Views", ", ".join(sorted(table["View"].astype(str).unique())))
st.caption(f"Folder: `{ws.path(m['data']['path'])}`")
st.dataframe(splits, width="stretch")

st.subheader("Models")
st.dataframe(ws.models_info(), width="stretch", hide_index=True,
             column_config={"size_mb": st.column_config.NumberColumn("size (MB)", format="%.2f"),
                            "parameters": st.column_config.NumberColumn("parameters", format="%d"),
                            "fingerprint": "sha256 (first 12)"})

st.subheader("Index and scores")
idx = m.get("index", {})
c1, c2, c3 = st.columns(3)
c1.metric("Indexed training frames", f"{idx.get('ntotal', 0):,}")
c2.metric("Index kind", str(idx.get("kind", "?")))
c3.metric("Synthetic sets", len(ws.synthetic_names))
fp = idx.get("fingerprint", {})
st.dataframe(pd.DataFrame({"part": list(fp), "fingerprint": [str(v)[:16] for v in fp.values()]}),
             hide_index=True, width="content")
if ws.synthetic_names:
    st.dataframe(pd.DataFrame([{"synthetic set": k, **{kk: v for kk, v in s.items() if kk != "path"}}
                               for k, s in m.get("synthetic", {}).items()]), hide_index=True, width="stretch")
st.caption(f"Engine settings: {m.get('engine', {})}")

st.subheader("Build")
b = m.get("build", {})
st.markdown(f"Built **{m.get('created', '?')}** (UTC); the real-data part (index, calibration) took "
            f"**{b.get('seconds', '?')} s**.")
if ws.pending:
    st.info(f"Synthetic sets still being generated: {', '.join(ws.pending)} (progress in the sidebar). "
            "Privacy, Coverage and Report fill in as each one is audited; Inspect works now.")
if b.get("timings"):
    st.dataframe(pd.DataFrame({"stage": list(b["timings"]), "seconds": list(b["timings"].values())}),
                 hide_index=True, width="content")
