"""Coverage: how much of the training set the generator reproduces, corrected for the
number of samples, and which training videos it never makes (hidden subspaces)."""

import pandas as pd
import streamlit as st

import widgets
from echoaudit import figures as F

ws = widgets.page_setup()
root, name = str(ws.root), widgets.synthetic_set(ws)
st.title("Coverage: generative recall")
if name is None:
    widgets.no_synthetic_set(ws, "to audit")

t = widgets.current_threshold(ws)
use_t = st.toggle(f"Count a match only when its score reaches the threshold ({t:.3f})", value=True,
                  key="coverage_use_threshold",
                  help="Off: every synthetic video's best training match counts (best-match-only recall).")
view = widgets.coverage_data(root, name, float(t) if use_t else None)
r = view["recall"]
rs, rh, le = r["synthetic"], r["heldout"], view["learned"]

c1, c2, c3, c4 = st.columns(4)
c1.metric("Generative recall (synthetic)", f"{100 * rs['recall']:.1f} %", help=r["rule"])
c1.caption(f"{rs['matched']} of {rs['n_train']} training videos, {rs['n_queries']} queries; "
           f"95 % CI {100 * rs['low']:.1f}-{100 * rs['high']:.1f} %")
c2.metric("Real held-out recall (baseline)", f"{100 * rh['recall']:.1f} %")
c2.caption(f"same rule, {rh['n_queries']} real videos; 95 % CI {100 * rh['low']:.1f}-{100 * rh['high']:.1f} %")
c3.metric("Adjusted recall (synthetic / real)", "n/a" if pd.isna(r["adjusted_recall"]) else f"{r['adjusted_recall']:.2f}")
c4.metric("Estimated limit s/N", "n/a" if le is None else f"{100 * le['recall_limit']:.1f} %",
          help=None if le is None else le["rule"])
if le is not None:
    c4.caption(f"{le['s_hat']} of {le['N']} videos learned; 95 % CI {100 * le['recall_low']:.1f}-"
               f"{100 * le['recall_high']:.1f} %")

left, right = st.columns(2)
left.plotly_chart(F.recall_threshold_figure(view["vs_threshold"], t if use_t else None), key="coverage_vs_t")
right.plotly_chart(F.recall_n_figure(view["vs_n"], view["n_train"], learned=le), key="coverage_vs_n")

st.subheader("Which training videos are covered")
st.caption("Each point is a training video (mean re-ID embedding, PCA). Select points with the box or lasso "
           "tool to list them.")
covered = view["covered"]
event = st.plotly_chart(F.coverage_map(widgets.pca_data(root), covered, name), key="coverage_map",
                        on_select="rerun", selection_mode=("points", "box", "lasso"))
picked = widgets.selected_videos(event)
train_names = set(covered["train_video"])
picked = [v for v in picked if v in train_names]
if picked:
    rows = covered.set_index("train_video").loc[picked].reset_index()
    th = widgets.thumbnails(root, "train", tuple(picked[:60]))
    st.dataframe(pd.DataFrame({"thumbnail": rows["train_video"].map(th), "training video": rows["train_video"],
                               "patient": rows["train_patient"], "EF (%)": rows["EF"], "view": rows["View"],
                               "covered": rows["covered"], "synthetic hits": rows["n_hits"],
                               "best score": rows["best_score"]}),
                 hide_index=True, width="stretch", row_height=70,
                 column_config={"thumbnail": st.column_config.ImageColumn("middle frame")})
else:
    st.caption(f"No point selected. {int((~covered['covered']).sum())} of {len(covered)} training videos "
               "are not covered.")

left, right = st.columns(2)
left.plotly_chart(F.coverage_bars(view["by_ef"], by_label="EF bin (%)"), key="coverage_ef")
right.plotly_chart(F.coverage_bars(view["by_view"], by_label="view"), key="coverage_view")
