"""Export trained demo checkpoints into ``assets/`` with ``demo.json``, which records the
phantom data they were trained on (so the demo can regenerate exactly that data) and
their headline training figures. Only weights and configs are copied: no optimizer state.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from echoaudit.errors import ConfigError, EchoAuditError
from echoaudit.fileio import atomic_dir, read_json, write_json

__all__ = ["export_demo_assets", "export_reid"]

_KEEP = (".json", ".safetensors")


def _copy(src: Path, dst: Path, summary: dict) -> None:
    if not src.is_dir():
        raise EchoAuditError(f"missing trained model folder {src}; run scripts/train_demo_assets.sh first")
    with atomic_dir(dst) as tmp:
        for f in src.rglob("*"):
            if f.is_file() and f.suffix in _KEEP and not f.name.startswith("trainer_state"):
                target = tmp / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _metrics(path: Path, keys: dict[str, type | tuple[type, ...]]) -> dict:
    """A training run's metrics / training JSON, read strictly, with ``keys`` of their types.

    Raises:
        ConfigError: the file is missing or damaged, or a key is missing or of another type.
    """
    record = read_json(path, what="training record", expect=dict)
    for key, kind in keys.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            raise ConfigError(f"training record {str(path)!r}: {key} is missing or of the wrong type "
                              f"(got {str(record.get(key))[:80]}); was the run trained to the end?")
    return record


_NUMBER = (int, float)


def export_reid(runs: str | Path, out: str | Path = "assets") -> dict:
    """Copy ``runs/reid/best`` to ``out/reid`` with its training summary (the re-ID alone:
    retraining the privacy filter leaves the VAE and the generators as they are)."""
    runs, out = Path(runs), Path(out)
    reid = _metrics(runs / "reid" / "metrics.json", {"best_auc": _NUMBER, "best_epoch": int})
    cfg = reid.get("config") if isinstance(reid.get("config"), dict) else {}
    summary = {
        "summary": f"latent space; best VAL AUC {reid['best_auc']:.4f} at epoch {reid['best_epoch']}; "
                   f"trained with disguised copies (copy_fraction {cfg.get('copy_fraction')}, "
                   f"hard_fraction {cfg.get('hard_fraction')})",
        "best_auc": reid["best_auc"], "best_epoch": reid["best_epoch"], "seconds": reid.get("seconds"),
        "config": cfg}
    _copy(runs / "reid" / "best", out / "reid", summary)
    return summary


def export_demo_assets(runs: str | Path, out: str | Path = "assets") -> dict:
    runs, out = Path(runs), Path(out)
    table = pd.read_csv(runs / "data" / "a4c" / "FileList.csv")
    patients = table["PatientID"].nunique()
    vpp = int(len(table) // patients)
    phantom = {"n_patients": int(patients), "videos_per_patient": vpp, "frames": int(table["NumberOfFrames"].iloc[0]),
               "fps": float(table["FPS"].iloc[0]), "size": int(table["FrameHeight"].iloc[0]),
               "view": str(table["View"].iloc[0]), "seed": 0}

    vae_path = runs / "vae" / "metrics.json"
    best = _metrics(vae_path, {"best": dict})["best"]
    if not all(isinstance(best.get(k), _NUMBER) for k in ("step", "psnr_lowpass", "psnr_raw", "ssim")):
        raise ConfigError(f"training record {str(vae_path)!r}: best must hold the numbers step, psnr_lowpass, "
                          f"psnr_raw and ssim; got {str(best)[:120]}")
    _copy(runs / "vae" / "best", out / "vae", {
        "summary": f"{best['step']} steps; held-out low-passed PSNR {best['psnr_lowpass']:.2f} dB, "
                   f"raw PSNR {best['psnr_raw']:.2f} dB, SSIM {best['ssim']:.3f}", **best})
    export_reid(runs, out)
    gens = {}
    for name in ("regular", "memorizing"):
        src = runs / f"gen_{name}" / "best"
        info = read_json(src / "training.json", what="training record") if (src / "training.json").exists() else {}
        n_train = info.get("train_videos") or info.get("n_train_videos")
        _copy(src, out / "generators" / name, {
            "summary": f"{info.get('step', '?')} steps on {n_train} training videos", "step": info.get("step"),
            "train_videos": n_train})
        gens[name] = f"generators/{name}"
    spec = {
        "phantom": phantom,
        "vae": "vae",
        "reid": "reid",
        "generators": gens,
        "build": {"n_synthetic": 32, "synthetic_frames": 32, "steps": 20, "seed": 0,
                  "engine": {"frame_stride": 4, "index_stride": 8, "k": 32},
                  # the regular set's EF utility, measured in the background after the sets
                  "utility": ["regular"] if "regular" in gens else [], "utility_seeds": 2, "utility_epochs": 20},
        "notes": {"trained_with": "bash scripts/train_demo_assets.sh",
                  "memorizing": "the memorizing generator saw only its subset of TRAIN videos, for many steps"},
    }
    write_json(out / "demo.json", spec)
    return spec
