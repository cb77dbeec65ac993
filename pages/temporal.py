"""Temporal consistency: does a video stay the patient of its first frame? Curves on one
time axis in seconds; every number per set counts that set's videos only."""

import pandas as pd
import streamlit as st

import widgets
from echoaudit import figures as F
from echoaudit import pickers

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
# One row per video (of the measure shown): sets of 10,000 videos are offered by a search,
# with a short list first (two videos of each set, then each set's least consistent ones).
part = summary[summary["measure"] == measure]
ids = part.sort_values("name", kind="mergesort")
if "temporal_videos" not in st.session_state:
    st.session_state["temporal_videos"] = ids.groupby("set", sort=False).head(2)["name"].tolist()
worst = ids.sort_values(["mean", "name"], kind="mergesort").groupby("set", sort=False).head(10)["name"]
c1, c2 = st.columns([1, 2])
query = c1.text_input("Find a video", key="temporal_search", placeholder="part of a name or set",
                      help=f"Type part of a video's name (or its set) to find any of the {len(part):,} videos.")
if query.strip():
    found = pickers.search(ids["name"].tolist(), query)
    options, note = found.names, found.sentence("videos")
else:
    options = pickers.shortlist(st.session_state["temporal_videos"], worst)
    note = (f"Offered: two videos of each set, then each set's least consistent ones ({len(options)} of "
            f"{len(part):,}); type to find any other.") if len(options) < len(part) else ""
known = set(part["name"])
chosen_now = [v for v in st.session_state["temporal_videos"] if v in known]
st.session_state["temporal_videos"] = chosen_now
chosen = c2.multiselect("Videos", pickers.options_with(options, chosen_now, set(chosen_now)), key="temporal_videos")
if note:
    st.caption(note)
st.plotly_chart(F.temporal_curves_figure(curves, chosen, measure), key="temporal_curves")
st.caption("Real held-out curves: a seeded sample spread over patients. Times are frame numbers over each "
           "video's frame rate, so sets recorded at different rates share the axis.")

c1, c2, c3 = st.columns(3)
c1.plotly_chart(F.temporal_distribution_figure(part, "mean", "per-video mean after frame 0"), key="temporal_mean")
c2.plotly_chart(F.temporal_distribution_figure(part, "min", "per-video minimum after frame 0"), key="temporal_min")
c3.plotly_chart(F.temporal_distribution_figure(part, "drop_s", "first time under 0.5 (s)"), key="temporal_drop")
numbers = widgets.temporal_numbers(root, measure)
rows = [{"set": n["set"], "videos": n["n_videos"], "mean after frame 0": n["mean"],
         "95 % CI": f"{n['low']:.3f}-{n['high']:.3f}", "videos dropping under 0.5": n["n_dropped"],
         "median drop time (s)": n["median_drop_s"]} for n in numbers.to_dict("records")]
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
