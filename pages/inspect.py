"""Inspect: one video (generated, uploaded, or from the workspace) against its nearest
training videos, played side by side, with a per-frame similarity strip and a verdict."""

import numpy as np
import pandas as pd
import streamlit as st

import review_widgets
import widgets
from echoaudit import figures as F
from echoaudit import pickers
from echoaudit.audit.scale import to_logit
from echoaudit.data.video import resize_frames
from echoaudit.errors import EchoAuditError

ws = widgets.page_setup()
root = str(ws.root)
st.title("Inspect a video")

source = st.radio("Video", ["Upload", "Generate", "From the workspace"], key="inspect_source", horizontal=True)
frames, fps, name = None, 50.0, None
if source == "Upload":
    up = st.file_uploader("Video file (AVI, MP4 or GIF)", type=["avi", "mp4", "gif"], key="inspect_upload")
    if up is not None:
        try:  # decoded in memory, cached for this session only; the log gets its hash, not its name
            frames, fps, _ = widgets.read_upload(up, ws.size)
            name = up.name
        except EchoAuditError as exc:
            widgets.show_error(exc)
elif source == "Generate":
    if not ws.generator_names:
        st.info("This workspace has no generator.")
    else:
        c1, c2, c3, c4 = st.columns(4)
        gen = c1.selectbox("Generator", ws.generator_names, key="inspect_generator")
        seed = int(c2.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="inspect_seed"))
        ef = c3.slider("Ejection fraction (%)", 10, 80, 55, key="inspect_ef")
        steps = c4.slider("Sampler steps", 5, 50, 20, key="inspect_steps")
        if st.button("Generate", key="inspect_generate", type="primary"):
            st.session_state["inspect_generated"] = (gen, seed, float(ef), steps)
        if st.session_state.get("inspect_generated"):
            gen, seed, ef, steps = st.session_state["inspect_generated"]
            with st.spinner(f"Generating with {gen} ({steps} steps) ..."):
                u8 = widgets.generate_video(root, gen, seed, ef, steps)
            frames, name = resize_frames(u8, ws.size), f"{gen}-seed{seed}-ef{ef:g}"
else:
    sets = ["heldout"] + ws.synthetic_names
    c1, c2, c3 = st.columns([1, 1, 2])
    set_name = c1.selectbox("Set", sets, key="inspect_set",
                            format_func=lambda s: "real held-out" if s == "heldout" else f"synthetic: {s}")
    ds = ws.heldout if set_name == "heldout" else ws.synthetic(set_name)
    # A set may hold 100,000 videos: offer the highest re-ID scores first (the flagged
    # ones at the top), and any other by typing part of its name or patient.
    best = widgets.best_scores(root, set_name)
    t_pick = widgets.current_threshold(ws)
    score_of = best.set_index("query")["score"]
    name = widgets.video_picker(
        "Video", ds.names, best["query"].head(pickers.MAX_OPTIONS), key="inspect_video", also=ds.patients,
        columns=(c2, c3), shortlist_note="Highest best-match scores first, flagged ones marked; type to find any other",
        format_func=lambda v: v if v not in score_of.index else
        f"{v} · logit {to_logit(score_of[v]):.2f}{' · flagged' if score_of[v] >= t_pick else ''}")
    if name is None:
        st.stop()
    frames, fps = widgets.workspace_video(root, set_name, name)

if frames is None:
    st.info("Choose or upload a video to compare it with the training set.")
    st.stop()

k = st.slider("Nearest training videos shown", 1, 8, 4, key="inspect_k")
t = widgets.current_threshold(ws)
# Uploads and workspace videos are cut and resampled to the clips the threshold was set on;
# a generated video already is such a clip.
uploaded = source == "Upload"  # its scores and MP4 are cached for this session only
scores = widgets.query_video(root, np.ascontiguousarray(frames, dtype=np.float32), str(name),
                             None if source == "Generate" else float(fps), upload=uploaded)
top = scores.per_train.head(k)
best = float(top["score"].iloc[0]) if len(top) else 0.0
if best >= t:
    st.error(f"MEMORIZED: best re-ID logit {to_logit(best):.2f} (probability {best:.6f}) >= threshold "
             f"{to_logit(t):.2f} (training video {top['train_video'].iloc[0]}, patient {top['train_patient'].iloc[0]})")
else:
    st.success(f"NOT MEMORIZED: best re-ID logit {to_logit(best):.2f} (probability {best:.6f}) < threshold "
               f"{to_logit(t):.2f}")

# One tiled H.264 video: every tile restarts on the same frame, so the query and its
# matches cannot drift apart the way several independently started players do.
train_rows = ws.train.table.set_index("FileName")
videos, captions = [frames], [f"query: {str(name)[:22]}\n{len(frames)} frames"]
for _, r in top.iterrows():
    ef_v = train_rows.at[r["train_video"], "EF"]
    videos.append(widgets.training_frames(root, r["train_video"]))
    captions.append(f"logit {to_logit(r['score']):.2f} {r['train_patient']}\nEF {ef_v:.0f}% {r['train_video'][-10:]}")
mp4 = widgets.tiled_mp4(tuple(videos), tuple(captions), float(fps), upload=uploaded)
st.video(mp4, format="video/mp4", loop=True, autoplay=True, muted=True)

best_video = top["train_video"].iloc[0] if len(top) else None
st.plotly_chart(F.frame_similarity_strip(scores.frames, scores.frame_curve, t,
                                         match=scores.curves.get(best_video) if best_video else None,
                                         match_label=f"against {best_video}"), key="inspect_strip")
st.dataframe(
    pd.DataFrame({"rank": np.arange(1, len(top) + 1), "training video": top["train_video"],
                  "patient": top["train_patient"], "re-ID logit": to_logit(top["score"].to_numpy()),
                  "probability": top["score"],
                  "peak logit (best frame)": to_logit(top["score_peak"].to_numpy()),
                  "EF (%)": [train_rows.at[v, "EF"] for v in top["train_video"]],
                  "best query frame": top["best_query_frame"], "best training frame": top["best_train_frame"]}),
    hide_index=True, width="stretch",
    column_config={"re-ID logit": st.column_config.NumberColumn(format="%.2f"),
                   "probability": st.column_config.NumberColumn(format="%.6f"),
                   "peak logit (best frame)": st.column_config.NumberColumn(format="%.2f")})
st.caption(f"Threshold {to_logit(t):.2f} re-ID logit, probability {t:.6f} (set on the Privacy page). The re-ID "
           "logit of a training video is its clip score: the mean over query frames of each frame's best match "
           "among that video's frames (a copy matches at every frame). "
           f"{scores.head_evaluations:,} frame pairs scored by the re-ID head.")

if source == "From the workspace" and set_name != "heldout" and len(top):
    st.subheader("Verdict on this pair")
    pair = st.selectbox("Training video judged", list(top["train_video"]), key="inspect_review_train",
                        help="The best match by default; any of the nearest training videos shown above.")
    review_widgets.decision_panel(ws, set_name, str(name), str(pair), float(t), review_widgets.rule_in_use(t),
                                  key="inspect_review")
