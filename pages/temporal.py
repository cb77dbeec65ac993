"""Temporal consistency: does a video stay the patient of its first frame? Curves on one
time axis in seconds; every number per set counts that set's videos only."""

import pandas as pd
import streamlit as st

import widgets
from echoaudit import figures as F
from echoaudit import report as R

ws = widgets.page_setup()
root = str(ws.root)
st.title("Temporal consistency")
view = widgets.temporal_data(root)
curves, summary = view["curves"], view["summary"]
if curves.empty:
    st.info("This workspace has no temporal curves.")
    st.stop()

measure = st.radio("Measure", ["first", "correlation"], key="temporal_measure", horizontal=True,
                   format_func={"first": "same-patient probability vs first frame",
                                "correlation": "embedding correlation with first frame (paper)"}.get)
sets = curves.groupby("id")["set"].first()
default = [v for s in sets.unique() for v in sets[sets == s].index[:2]]
chosen = st.multiselect("Videos", sorted(sets.index), default=default, key="temporal_videos")
st.plotly_chart(F.temporal_curves_figure(curves, chosen, measure), key="temporal_curves")
st.caption("Real held-out curves: a seeded sample spread over patients. Times are frame numbers over each "
           "video's frame rate, so sets recorded at different rates share the axis.")

part = summary[summary["measure"] == measure]
c1, c2, c3 = st.columns(3)
c1.plotly_chart(F.temporal_distribution_figure(part, "mean", "per-video mean after frame 0"), key="temporal_mean")
c2.plotly_chart(F.temporal_distribution_figure(part, "min", "per-video minimum after frame 0"), key="temporal_min")
c3.plotly_chart(F.temporal_distribution_figure(part, "drop_s", "first time under 0.5 (s)"), key="temporal_drop")
rows = []
for set_name in part["set"].unique():
    n = R.temporal_set_numbers(summary, set_name, measure)
    if n is not None:
        rows.append({"set": set_name, "videos": n["n_videos"], "mean after frame 0": n["mean"],
                     "95 % CI": f"{n['low']:.3f}-{n['high']:.3f}", "videos dropping under 0.5": n["n_dropped"],
                     "median drop time (s)": n["median_drop_s"]})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
