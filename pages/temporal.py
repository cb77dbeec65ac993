"""Temporal consistency: does a video stay the patient of its first frame?"""

import streamlit as st

import widgets
from echoaudit import figures as F

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

part = summary[summary["measure"] == measure]
c1, c2, c3 = st.columns(3)
c1.plotly_chart(F.temporal_distribution_figure(part, "mean", "per-video mean"), key="temporal_mean")
c2.plotly_chart(F.temporal_distribution_figure(part, "min", "per-video minimum"), key="temporal_min")
c3.plotly_chart(F.temporal_distribution_figure(part, "first_drop", "first frame < 0.5"),
                key="temporal_drop")
agg = part.groupby("set").agg(videos=("name", "size"), mean=("mean", "mean"), min=("min", "mean"),
                              dropped=("first_drop", lambda s: int(s.notna().sum())))
st.dataframe(agg.rename(columns={"mean": "mean of per-video means", "min": "mean of per-video minima",
                                 "dropped": "videos dropping under 0.5"}), width="stretch")
