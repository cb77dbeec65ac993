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
  # torch first and pinned: a looser pin pulls a multi-GB CUDA build.
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  touch .venv/.installed
fi
