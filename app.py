"""EchoAudit dashboard: declares the pages; the workspace and shared choices come from
widgets.py. Run with ``streamlit run app.py`` (workspace folder: $ECHOAUDIT_WORKSPACE)."""

import streamlit as st

import widgets
from echoaudit.errors import EchoAuditError

st.set_page_config(page_title="EchoAudit", page_icon=":material/ecg_heart:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/inspect.py", title="Inspect", icon=":material/search:"),
    st.Page("pages/privacy.py", title="Privacy", icon=":material/shield_person:"),
    st.Page("pages/coverage.py", title="Coverage", icon=":material/scatter_plot:"),
    st.Page("pages/temporal.py", title="Temporal", icon=":material/timeline:"),
    st.Page("pages/utility.py", title="Utility", icon=":material/monitoring:"),
    st.Page("pages/report.py", title="Report", icon=":material/description:"),
]
page = st.navigation(pages)
widgets.require_workspace()  # the build panel and st.stop() when the folder has none
try:
    page.run()
except EchoAuditError as exc:  # user-caused problems: the message, never a stack trace
    widgets.show_error(exc)
