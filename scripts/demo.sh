#!/usr/bin/env bash
# The README's first command: install, build the phantom demo workspace from the shipped
# checkpoints in assets/ (first run only, in the background), and start the dashboard on it.
# The dashboard shows the build's progress and opens as soon as the workspace is usable;
# the demo's synthetic sets are generated after that. Ctrl-C stops both; a later start
# resumes the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WS=${ECHOAUDIT_WORKSPACE:-demo_workspace}
# Start (or resume) the build unless the workspace is complete: a stdlib-only check, so a
# later start goes straight to the dashboard.
.venv/bin/python -m echoaudit.buildjob start-demo "$WS"
export ECHOAUDIT_WORKSPACE="$WS"
# No file watcher: it watches this folder tree (.venv and the workspace included) and took a
# whole core while the build writes its files. (Developers editing pages: drop the flag.)
exec .venv/bin/streamlit run app.py --server.headless=true --browser.gatherUsageStats=false \
  --server.fileWatcherType=none "$@"
