"""Coverage: how much of the training set the generator makes (best match, no threshold),
per patient and per video, corrected for the number of samples and compared with real
held-out patients; and which training videos it never makes (hidden subspaces)."""

import pandas as pd
import streamlit as st

import widgets
from echoaudit import figures as F
from echoaudit import pickers
from echoaudit.audit.scale import to_logit

ws = widgets.page_setup()
root, name = str(ws.root), widgets.synthetic_set(ws)
st.title("Coverage: generative recall")
if name is None:
    widgets.no_synthetic_set(ws, "to audit")

view = widgets.coverage_data(root, name)
cov = view["coverage"]
st.caption("A training video counts as covered when it is the closest match of at least one synthetic video "
           "(no threshold, the paper's rule). Training videos a synthetic video re-identifies above the privacy "
           "threshold are a privacy number: see the Privacy page and the report.")


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


for level, unit in (("patient", "patients"), ("video", "videos")):
    cs, cr, adj = cov["synthetic"][level], cov["real"][level], cov["adjusted"][level]
    st.subheader(f"{unit.capitalize()}")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(f"Coverage, {level} level (synthetic)", pct(cs["share"]), help=cov["synthetic"]["rule"])
    c1.caption(f"{cs['matched']} of {cs['n_train']} training {unit}, {cs['n_queries']} synthetic videos; "
               f"95 % CI {pct(cs['low'])}-{pct(cs['high'])}")
    c2.metric(f"Coverage limit, {level} level", "n/a" if cs["limit"] is None else pct(cs["limit"]),
              help=cs["limit_rule"])
    if cs["limit"] is not None:
        c2.caption(f"about {cs['s_hat']} of {cs['n_train']} {unit} with unlimited samples; "
                   f"95 % CI {pct(cs['limit_low'])}-{pct(cs['limit_high'])}")
    c3.metric(f"Real held-out coverage, {level} level", pct(cr["share"]))
    c3.caption(f"{cr['n_queries']} real videos of check patients (not those that set the threshold); "
               f"95 % CI {pct(cr['low'])}-{pct(cr['high'])}")
    c4.metric(f"Adjusted coverage, {level} level (synthetic / real)", f"{adj['value']:.2f}",
              help=cov["adjusted"]["rule"])
    c4.caption(f"95 % CI {adj['low']:.2f}-{adj['high']:.2f}, both sets at n = {adj['n_star']} videos "
               "(occupancy model; every synthetic video used)")

st.plotly_chart(F.recall_n_figure(view["vs_n"], view["n_train"], learned=view["learned"]), key="coverage_vs_n")

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
    # a lasso over an EchoNet-size map can pick thousands: one page, thumbnails for its rows
    rows = widgets.table_page(covered.set_index("train_video").loc[picked].reset_index(), key="coverage_picked",
                              what="selected training videos", csv_name=f"{name}_selected_training_videos.csv")
    th = widgets.thumbnails(root, "train", tuple(rows["train_video"]))
    st.dataframe(pd.DataFrame({"thumbnail": rows["train_video"].map(th), "training video": rows["train_video"],
                               "patient": rows["train_patient"], "EF (%)": rows["EF"], "view": rows["View"],
                               "covered": rows["covered"], "synthetic hits": rows["n_hits"],
                               "best logit": [None if pd.isna(p) else to_logit(p) for p in rows["best_score"]],
                               "best probability": rows["best_score"]}),
                 hide_index=True, width="stretch", row_height=70,
                 column_config={"thumbnail": st.column_config.ImageColumn("middle frame"),
                                "best logit": st.column_config.NumberColumn(
                                    "best re-ID logit", format="%.2f",
                                    help="Highest score of the synthetic videos whose best match this video is"),
                                "best probability": st.column_config.NumberColumn("probability", format="%.6f")})
else:
    n_pat = covered.groupby("train_patient")["covered"].any()
    st.caption(f"No point selected. {int((~covered['covered']).sum())} of {len(covered)} training videos and "
               f"{int((~n_pat).sum())} of {len(n_pat)} training patients are not covered.")

st.subheader("Find training videos")
c1, c2 = st.columns([1, 2])
which = c1.radio("List", ["not covered", "covered", "all"], key="coverage_list", horizontal=True)
query = c2.text_input("Find a training video or patient", key="coverage_search",
                      placeholder="part of a video name or patient ID")
listed = covered if which == "all" else covered[covered["covered"] == (which == "covered")]
listed = pickers.search_table(listed, query, ["train_video", "train_patient"])
if which != "not covered":  # the most often made first
    listed = listed.sort_values(["n_hits", "train_video"], ascending=[False, True], kind="mergesort")
rows = widgets.table_page(listed, key="coverage_rows", what="training videos",
                          csv_name=f"{name}_training_videos_{which.replace(' ', '_')}.csv")
st.dataframe(pd.DataFrame({"training video": rows["train_video"], "patient": rows["train_patient"],
                           "EF (%)": rows["EF"], "view": rows["View"], "covered": rows["covered"],
                           "synthetic hits": rows["n_hits"],
                           "best logit": [None if pd.isna(p) else to_logit(p) for p in rows["best_score"]]}),
             hide_index=True, width="stretch", key="coverage_table",
             column_config={"best logit": st.column_config.NumberColumn("best re-ID logit", format="%.2f")})
if len(listed) == 0:
    st.caption("No training video matches." if query.strip() else f"No training video is {which}.")

left, right = st.columns(2)
left.plotly_chart(F.coverage_bars(view["by_ef"], by_label="EF bin (%)"), key="coverage_ef")
right.plotly_chart(F.coverage_bars(view["by_view"], by_label="view"), key="coverage_view")
