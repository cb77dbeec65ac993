"""Privacy: which synthetic videos re-identify a training patient, at a threshold the
reviewer can move on the re-ID logit scale (default: the calibrated held-out-to-train
rule), with the false-flag rate it obtains on unseen patients and the excess over it."""

import pandas as pd
import streamlit as st

import review_widgets
import widgets
from echoaudit import figures as F
from echoaudit.audit.privacy import DEFAULT_RULE, RULE_NAMES, THRESHOLD_RULES
from echoaudit.audit.scale import from_logit, to_logit

ws = widgets.page_setup()
root, name = str(ws.root), widgets.synthetic_set(ws)
st.title("Privacy: memorization")
if name is None:
    widgets.no_synthetic_set(ws, "to audit")

calib = widgets.calibration_data(root, name)
# Widget state does not survive a page switch: the rule comes back from a plain key.
if "privacy_rule" not in st.session_state:
    st.session_state["privacy_rule"] = st.session_state.get("privacy_rule_applied", DEFAULT_RULE)
rule = st.radio("Calibration rule", THRESHOLD_RULES, format_func=RULE_NAMES.get, key="privacy_rule", horizontal=True,
                help="Held-out-to-train: the percentile of real unseen videos' best scores against the training set, "
                     "the statistic a synthetic video is judged by. EchoNet-Synthetic: the published rule, a "
                     "percentile of training videos' best scores against the held-out videos.")
cal = calib["rules"][rule]
lo, hi = calib["range"]
if st.session_state.get("privacy_rule_applied") != rule:  # first visit or another rule: its calibrated value
    st.session_state["privacy_threshold"] = round(cal["logit"], 2)
    st.session_state["privacy_rule_applied"] = rule
elif "privacy_threshold" not in st.session_state:  # back from another page: the threshold in use
    st.session_state["privacy_threshold"] = round(to_logit(st.session_state.get("audit_threshold", cal["value"])), 2)
st.session_state["privacy_threshold"] = min(hi, max(lo, float(st.session_state["privacy_threshold"])))
x = st.slider("Memorization threshold (re-ID logit)", lo, hi, step=0.01, format="%.2f", key="privacy_threshold",
              help="A synthetic video is flagged when its best re-identification score against any training video "
                   "reaches this value. Logit = log(p / (1 - p)) of the head's same-patient probability p; "
                   "the paper's tau of 6.00 is on this scale.")
t = from_logit(x)
widgets.set_threshold(t)
view = widgets.privacy_data(root, name, float(t))
s, chk, ex = view["summary"], view["check"], view["excess"]
if chk is None:
    st.caption(f"{x:.2f} = probability {t:.6f}. Real false-flag rate at it: not measured (this workspace has no "
               "check part of held-out patients; rebuild it to measure one).")
else:
    st.caption(f"{x:.2f} = probability {t:.6f}. At it, {chk['k']} of {chk['n']} real videos of "
               f"{chk['n_patients']} check patients (never used to set a threshold) are flagged: "
               f"**{100 * chk['rate']:.1f} %** [{100 * chk['low']:.1f}, {100 * chk['high']:.1f}] (Wilson 95 %).")
st.caption(f"Calibrated: {cal['sentence']}")

auc = widgets.auc_data(root)
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Flagged synthetic videos", f"{s['n_flagged']} of {s['n_videos']}")
c2.metric("Flagged share", f"{100 * s['share']:.1f} %", help=s["rule"])
c2.caption(f"95 % Wilson CI {100 * s['low']:.1f}-{100 * s['high']:.1f} %")
c3.metric("Excess (videos)", f"{ex['videos']:+.1f}" if ex["measured"] else "n/a",
          help=ex.get("rule", "needs a check part of held-out patients"))
if ex["measured"]:
    c3.caption(f"95 % interval {ex['videos_low']:.1f} to {ex['videos_high']:.1f} videos (Newcombe)")
c4.metric("Calibrated threshold (95th pct.)", f"{cal['logit']:.2f}", help=RULE_NAMES[rule])
c4.caption(f"re-ID logit (p = {cal['value']:.6f}); 95 % bootstrap CI {cal['logit_low']:.2f}-{cal['logit_high']:.2f}")
c5.metric("Re-ID AUC", "n/a" if auc is None else f"{auc['value']:.3f}")
if auc:
    c5.caption(f"95 % bootstrap CI {auc['low']:.3f}-{auc['high']:.3f} ({auc['n_pairs']} pairs)")
st.markdown(f"**Headline:** {ex['sentence']}")

st.dataframe(calib["table"], hide_index=True, width="stretch", key="privacy_rules",
             column_config={"threshold (re-ID logit)": st.column_config.NumberColumn(format="%.2f"),
                            "probability": st.column_config.NumberColumn(format="%.6f"),
                            "stated false-flag rate (%)": st.column_config.NumberColumn(format="%.1f"),
                            "measured on check patients (%)": st.column_config.NumberColumn(format="%.1f")})

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
    # Thumbnails are decoded for the rows of this page only; the whole list is a CSV.
    shown = widgets.table_page(flagged, key="privacy_flagged", what="flagged videos",
                               csv_name=f"{name}_flagged_logit{x:.2f}.csv")
    syn_th = widgets.thumbnails(root, name, tuple(shown["query"]))
    train_th = widgets.thumbnails(root, "train", tuple(shown["train_video"].unique()))
    st.dataframe(pd.DataFrame({"synthetic": shown["query"].map(syn_th), "synthetic video": shown["query"],
                               "logit": to_logit(shown["score"].to_numpy()), "probability": shown["score"],
                               "training": shown["train_video"].map(train_th),
                               "training video": shown["train_video"], "patient": shown["train_patient"]}),
                 hide_index=True, width="stretch", row_height=70,
                 column_config={"synthetic": st.column_config.ImageColumn("synthetic (middle frame)"),
                                "training": st.column_config.ImageColumn("best training match"),
                                "logit": st.column_config.NumberColumn("re-ID logit", format="%.2f"),
                                "probability": st.column_config.NumberColumn("probability", format="%.6f")})

filters = widgets.filter_data(root, name, float(t))
if filters:
    st.subheader("Second filter")
    st.caption("Another re-ID network's verdicts beside this workspace's, at the threshold above for this filter "
               "and at its own calibrated threshold for the other (`echoaudit filters add`).")
for f in filters:
    info = f["info"]
    st.markdown(f"**{f['name']}**: {info['scorer']} scorer ({info['kind']}), threshold {info['threshold']:.4f} "
                f"({info['scale']}).")
    if "missing" in f:
        st.warning(f["missing"])
        continue
    a = f["agreement"]
    k1, k2, k3, k4 = st.columns(4)
    k1.metric("Cohen's kappa", f"{a['kappa']:.2f}", help="1: the filters agree on every video beyond chance; "
              "0: no more than chance")
    k1.caption(f"95 % bootstrap {a['low']:.2f} to {a['high']:.2f} ({a['n']} videos)")
    k2.metric("Both flag", a["both"])
    k3.metric("Only this workspace's", a["only_first"])
    k4.metric(f"Only {f['name']}", a["only_second"])
    st.caption(f["sentence"])
    d = f["disagreements"]
    if d.empty:
        st.success("The two filters give every synthetic video the same verdict.")
        continue
    d = widgets.table_page(d, key=f"privacy_filter_{f['name']}_rows", what="disagreements",
                           csv_name=f"{name}_{f['name']}_disagreements.csv")
    syn_th = widgets.thumbnails(root, name, tuple(d["query"]))
    train_th = widgets.thumbnails(root, "train", tuple(pd.unique(pd.concat([d["train_first"], d["train_second"]]))))
    st.dataframe(pd.DataFrame({
        "synthetic": d["query"].map(syn_th), "synthetic video": d["query"],
        "flagged by": d["flagged_first"].map({True: "this workspace only", False: f"{f['name']} only"}),
        "logit": to_logit(d["score_first"].to_numpy()), "match (this workspace)": d["train_first"].map(train_th),
        "training video": d["train_first"], f"{f['name']} score": d["score_second"],
        f"match ({f['name']})": d["train_second"].map(train_th), f"{f['name']} training video": d["train_second"]}),
        hide_index=True, width="stretch", row_height=70, key=f"privacy_filter_{f['name']}",
        column_config={"synthetic": st.column_config.ImageColumn("synthetic (middle frame)"),
                       "match (this workspace)": st.column_config.ImageColumn("best match (this workspace)"),
                       f"match ({f['name']})": st.column_config.ImageColumn(f"best match ({f['name']})"),
                       "logit": st.column_config.NumberColumn("re-ID logit", format="%.2f"),
                       f"{f['name']} score": st.column_config.NumberColumn(format="%.4f")})

st.subheader("Review")
review_widgets.review_queue_panel(ws, name, float(t), review_widgets.rule_in_use(t))
review_widgets.release_download(ws, name, float(t), x)

st.subheader("Training patients re-identified")
pp = view["per_patient"]
if pp.empty:
    st.caption("None at this threshold.")
else:
    pp = pp.assign(train_videos=pp["train_videos"].map(", ".join), max_logit=to_logit(pp["max_score"].to_numpy(dtype=float)))
    st.dataframe(widgets.table_page(pp, key="privacy_patients", what="patients",
                                    csv_name=f"{name}_patients_logit{x:.2f}.csv"),
                 hide_index=True, width="stretch",
                 column_order=["train_patient", "n_flagged", "n_train_videos", "max_logit", "max_score", "train_videos"],
                 column_config={"train_patient": "patient", "n_flagged": "flagged synthetic videos",
                                "n_train_videos": "distinct training videos hit",
                                "max_logit": st.column_config.NumberColumn("highest re-ID logit", format="%.2f"),
                                "max_score": st.column_config.NumberColumn("highest probability", format="%.6f"),
                                "train_videos": "training videos"})
