#!/usr/bin/env bash
# Shared set-up for the two README commands: a venv with the CPU torch and the requirements.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Fast path: a finished install newer than the requirements (no heavy imports to check it).
if [ -x .venv/bin/python ] && [ -f .venv/.installed ] && [ ! requirements.txt -nt .venv/.installed ] \
   && [ ! pyproject.toml -nt .venv/.installed ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, diffusers, faiss, streamlit, echoaudit" 2>/dev/null \
   || [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  # torch pinned in the same run as the rest: a looser pin pulls a multi-GB CUDA build.
  # --no-compile: byte-compiling every file of torch took ~45 s of an ~80 s install; only
  # the modules EchoAudit imports are compiled, by importing them once below (~10 s).
  PIP=(.venv/bin/pip install -q --disable-pip-version-check --no-compile)
  "${PIP[@]}" torch==2.13.0 -r requirements.txt
  "${PIP[@]}" --no-deps -e .
  PYTHONDONTWRITEBYTECODE= .venv/bin/python -c "
import echoaudit.build, echoaudit.demo, echoaudit.cli, echoaudit.generate, echoaudit.report, echoaudit.figures
import echoaudit.models.diffusion, echoaudit.data.phantom, echoaudit.audit.summary
import streamlit, streamlit.web.bootstrap, streamlit.testing.v1, plotly.graph_objects, plotly.express
"
  touch .venv/.installed
fi
