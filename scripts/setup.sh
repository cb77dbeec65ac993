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
  # uv installs in ~10 s what pip takes ~35 s for; it does not look in pip's find-links, so
  # it gets the CPU torch wheel on this disk by its path. Without that wheel (or uv): pip.
  # No byte-compiling of every file (torch alone took ~45 s): the modules EchoAudit imports
  # are compiled by importing them once below (~10 s).
  TORCH_WHL=$(ls /opt/wheels/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$TORCH_WHL" ] && .venv/bin/pip install -q --disable-pip-version-check uv==0.13.8 \
     && .venv/bin/uv pip install -q --python .venv/bin/python "$TORCH_WHL" -r requirements.txt \
     && .venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .; then
    :
  else
    PIP=(.venv/bin/pip install -q --disable-pip-version-check --no-compile)
    "${PIP[@]}" torch==2.13.0 -r requirements.txt
    "${PIP[@]}" --no-deps -e .
  fi
  PYTHONDONTWRITEBYTECODE= .venv/bin/python -c "
import echoaudit.build, echoaudit.demo, echoaudit.cli, echoaudit.generate, echoaudit.report, echoaudit.figures
import echoaudit.models.diffusion, echoaudit.data.phantom, echoaudit.audit.summary
import streamlit, streamlit.web.bootstrap, streamlit.testing.v1, plotly.graph_objects, plotly.express
"
  touch .venv/.installed
fi
