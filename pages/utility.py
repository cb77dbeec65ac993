"""Utility: does the synthetic set teach an EF model that works on real patients, and what
does privacy filtering cost? The results of ``echoaudit eval utility`` (read from
<workspace>/utility/<set>/), errors by EF bin beside coverage by EF bin, and the
generator's EF agreement."""

import streamlit as st

import widgets
from echoaudit import figures as F
from echoaudit.audit.utility import ARM_LABELS
from echoaudit.errors import EchoAuditError
from echoaudit.utility_view import display_table, utility_command

ws = widgets.page_setup()
root, name = str(ws.root), widgets.synthetic_set(ws)
st.title("Downstream utility: an EF model trained on synthetic videos")
if name is None:
    widgets.no_synthetic_set(ws, "to evaluate")

try:
    res = widgets.utility_data(root, name)
except EchoAuditError as exc:  # damaged result files: say which and why (the page also runs without app.py)
    widgets.show_error(exc)
    st.stop()
if res is None and name in ws.utility_pending:
    st.info(f"The utility of synthetic set **{name}** is being measured by the build, in the background: EF models "
            "trained on five training sets (real, synthetic, filtered, a random subset, real + synthetic), each "
            "tested on real TEST patients. Its progress is in the sidebar; this page fills in when it is done.")
    st.stop()
if res is None:
    st.info(f"The utility of synthetic set **{name}** is not computed yet: it trains an EF model on five training "
            "sets (several seeds each) and tests each on real TEST patients. Run\n\n"
            f"```\n{utility_command(root, name)}\n```\n\nand reload this page.")
    st.stop()

if res["table"] is not None:
    test = (res["record"] or {}).get("test") or {}
    st.caption(f"Each row: an EF model trained on that set, tested on the same {test.get('videos', '?')} real TEST "
               f"videos ({test.get('patients', '?')} patients). 95 % intervals: percentile bootstrap over TEST "
               "patients; the difference against (a) is paired (positive = worse). Results in "
               f"`{res['folder']}`.")
    st.dataframe(display_table(res["table"]), hide_index=True, width="stretch", key="utility_table")
    st.markdown(f"**{res['sentence']}**")

    st.subheader("Where the model fails: errors and coverage by EF bin")
    left, right = st.columns(2)
    left.plotly_chart(F.utility_errors_by_ef(res["by_ef"], ARM_LABELS), key="utility_by_ef")
    right.plotly_chart(F.coverage_bars(widgets.coverage_data(root, name)["by_ef"], by_label="EF bin (%)"),
                       key="utility_coverage_ef")
else:
    st.info(f"Only the EF agreement is computed. For the comparison table run `{utility_command(root, name)}`.")

agr = res["agreement"]
if agr is not None:
    st.subheader("EF agreement of the generator")
    c1, c2, c3 = st.columns(3)
    for col, key, label, digits in ((c1, "mae", "EF agreement MAE (EF points)", 1), (c2, "pearson_r", "Pearson r", 2),
                                    (c3, "bias", "Bias (measured - asked, EF points)", 1)):
        e = agr[key]
        col.metric(label, "n/a" if e["value"] != e["value"] else f"{e['value']:.{digits}f}", help=e["rule"])
        if e["low"] == e["low"]:
            col.caption(f"95 % CI {e['low']:.{digits}f} to {e['high']:.{digits}f}")
    st.markdown(agr["sentence"])
    if res["agreement_points"] is not None:
        st.plotly_chart(F.ef_agreement_scatter(res["agreement_points"], agr), key="utility_agreement")
