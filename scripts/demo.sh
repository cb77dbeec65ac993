#!/usr/bin/env bash
# The README's first command: install, build the phantom demo workspace from the shipped
# checkpoints in assets/ (first run only), and start the dashboard on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WS=${ECHOAUDIT_WORKSPACE:-demo_workspace}
# A complete workspace has its manifest (written last): skip the build and its imports.
[ -f "$WS/manifest.json" ] || .venv/bin/echoaudit demo --workspace "$WS"
export ECHOAUDIT_WORKSPACE="$WS"
exec .venv/bin/streamlit run app.py --server.headless=true --browser.gatherUsageStats=false "$@"
