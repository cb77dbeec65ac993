"""bench/echonet_scale.py runs end to end in its smoke mode (tiny sizes, ~15 s on one thread)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_echonet_scale_smoke(tmp_path):
    out = tmp_path / "scale.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    # A subprocess: the bench sets torch's and FAISS's thread counts for the whole process.
    res = subprocess.run([sys.executable, str(ROOT / "bench/echonet_scale.py"), "--smoke", "--threads", "1",
                          "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert lines[-1].startswith("headline: [SMOKE, not an estimate]"), lines[-1]
    assert any(ln.startswith("N vectors: 5,000 = ") and "jittered copies" in ln for ln in lines)
    assert any(ln.startswith("dashboard pages: timed by bench/page_speed.py") for ln in lines)
    assert any(ln.startswith("index auto (flat, what a workspace builds)") for ln in lines)  # 5,000 vectors: exact
    data = json.loads(out.read_text())
    assert data["mode"] == "smoke" and data["index"]["n"] == 5000
    assert set(data["index"]) >= {"flat", "hnsw", "ivf", "auto"}
    assert data["index"]["auto"]["kind"] == "flat" and data["index"]["auto"]["heldout_recall"] == 1.0
    assert data["index"]["flat"]["recall"] == 1.0
    assert 0 <= data["index"]["hnsw"]["recall"] <= 1
    assert data["total_h"] > 0 and abs(sum(data["stages_h"].values()) - data["total_h"]) < 1e-9
