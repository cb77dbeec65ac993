"""Privacy: which synthetic videos re-identify a training patient, at a threshold the
reviewer can move (default: the calibrated 95th-percentile rule)."""

import pandas as pd
import streamlit as st

import widgets
from echoaudit import figures as F

ws = widgets.page_setup()
root, name = str(ws.root), widgets.synthetic_set(ws)
st.title("Privacy: memorization")
if name is None:
    widgets.no_synthetic_set(ws, "to audit")

cal = widgets.calibrated_threshold(root, 95.0)
if "privacy_threshold" not in st.session_state:  # keep the value across page switches
    st.session_state["privacy_threshold"] = float(st.session_state.get("audit_threshold", round(cal["value"], 3)))
t = st.slider("Memorization threshold (same-patient probability)", 0.0, 1.0, step=0.001, format="%.3f",
              key="privacy_threshold",
              help="A synthetic video is flagged when its best re-identification score against any training video "
                   "reaches this value.")
widgets.set_threshold(t)
view = widgets.privacy_data(root, name, float(t))
s = view["summary"]
st.caption(f"{t:.3f} is the **{view['percentile']:.1f}th percentile** of the calibration scores: about "
           f"{100 - view['percentile']:.1f} % of real unseen videos would be flagged. Calibrated default: "
           f"{cal['describe']}")

auc = widgets.auc_data(root)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Flagged synthetic videos", f"{s['n_flagged']} of {s['n_videos']}")
c2.metric("Flagged share", f"{100 * s['share']:.1f} %", help=s["rule"])
c2.caption(f"95 % Wilson CI {100 * s['low']:.1f}-{100 * s['high']:.1f} %")
c3.metric("Calibrated threshold (95th pct.)", f"{cal['value']:.3f}")
c3.caption(f"95 % bootstrap CI {cal['low']:.3f}-{cal['high']:.3f}")
c4.metric("Re-ID AUC", "n/a" if auc is None else f"{auc['value']:.3f}")
if auc:
    c4.caption(f"95 % bootstrap CI {auc['low']:.3f}-{auc['high']:.3f} ({auc['n_pairs']} pairs)")

left, right = st.columns(2)
left.plotly_chart(F.score_histograms(view["heldout_best"]["score"], view["synthetic_best"]["score"], t,
                                     synthetic_label=f"synthetic ({name})"), key="privacy_hist")
roc = ws.reid_roc
if auc:
    right.plotly_chart(F.roc_figure(roc["label"], roc["score"], auc), key="privacy_roc")

st.subheader(f"Flagged videos ({s['n_flagged']})")
flagged = view["flags"][view["flags"]["flagged"]]
if flagged.empty:
    st.success("No synthetic video reaches the threshold.")
else:
    shown = flagged.head(100)
    syn_th = widgets.thumbnails(root, name, tuple(shown["query"]))
    train_th = widgets.thumbnails(root, "train", tuple(shown["train_video"].unique()))
    st.dataframe(pd.DataFrame({"synthetic": shown["query"].map(syn_th), "synthetic video": shown["query"],
                               "score": shown["score"], "training": shown["train_video"].map(train_th),
                               "training video": shown["train_video"], "patient": shown["train_patient"]}),
                 hide_index=True, width="stretch", row_height=70,
                 column_config={"synthetic": st.column_config.ImageColumn("synthetic (middle frame)"),
                                "training": st.column_config.ImageColumn("best training match"),
                                "score": st.column_config.NumberColumn("re-ID probability", format="%.3f")})
    if len(flagged) > len(shown):
        st.caption(f"First {len(shown)} of {len(flagged)} shown; the report lists all.")

csv = pd.DataFrame({"video": view["unflagged"]}).to_csv(index=False).encode()
st.download_button(f"Download the filtered list ({len(view['unflagged'])} unflagged videos, CSV)", csv,
                   file_name=f"{name}_unflagged_t{t:.3f}.csv", mime="text/csv", key="privacy_download")

st.subheader("Training patients re-identified")
pp = view["per_patient"]
if pp.empty:
    st.caption("None at this threshold.")
else:
    st.dataframe(pp.assign(train_videos=pp["train_videos"].map(", ".join)), hide_index=True, width="stretch",
                 column_config={"train_patient": "patient", "n_flagged": "flagged synthetic videos",
                                "n_train_videos": "distinct training videos hit",
                                "max_score": st.column_config.NumberColumn("highest score", format="%.3f"),
                                "train_videos": "training videos"})
