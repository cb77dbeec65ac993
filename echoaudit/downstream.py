"""The downstream-utility experiment: train the EF model on five training sets, test each
on the real TEST patients (the numbers: :mod:`echoaudit.audit.utility`).

Steps of :func:`run_utility`:

1. The five training sets (:func:`~echoaudit.audit.utility.training_sets`): real TRAIN,
   the synthetic set, the synthetic set minus its flagged videos, a random subset of the
   synthetic set of that size, real TRAIN + synthetic.
2. Every set trains with the same recipe and the same optimisation budget: steps per
   epoch = one pass over the real TRAIN set, whatever the set's size, and early stopping
   on the real VAL patients (so the sets differ only in what the model learns from).
3. Each set x each seed is a run folder ``out/runs/<set>/seed<k>/`` (``train_ef``:
   ``best/``, ``latest/``, ``metrics.json``); a finished run is reused and an
   interrupted one resumed, so a killed ``eval utility`` continues where it stopped.
4. Each best model predicts the real TEST videos (mean of ``eval_crops`` clips); the
   table, the errors by EF bin and the sentence come from those predictions.
5. EF agreement of the generator: the real-trained model of the first seed reads the EF
   of every synthetic video, against the EF the video was generated for.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from echoaudit.audit.utility import (
    ARM_LABELS,
    ARMS,
    ef_agreement,
    errors_by_ef_bin,
    training_sets,
    utility_sentence,
    utility_table,
)
from echoaudit.errors import CheckpointError, DatasetError
from echoaudit.models.ef import load_ef
from echoaudit.train.ef import EFTrainConfig, EFVideos, finished_run, predict_ef, train_ef, videos_digest

__all__ = ["UtilityConfig", "UtilityResult", "run_utility", "train_or_reuse"]


@dataclass(frozen=True)
class UtilityConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    train: EFTrainConfig = field(default_factory=EFTrainConfig)
    subset_seed: int = 0  # the random subset (d)
    min_videos: int = 2  # a set with fewer training videos is not trained (its row says so)
    n_boot: int = 1000
    conf: float = 0.95

    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(
                not isinstance(s, (int, np.integer)) or s < 0 for s in self.seeds):
            raise ValueError(f"UtilityConfig.seeds must be distinct integers >= 0, at least one; got {self.seeds!r}")


@dataclass
class UtilityResult:
    """What :func:`run_utility` measured.

    Attributes:
        table: the comparison (:func:`~echoaudit.audit.utility.utility_table`), one row per set.
        by_ef: errors by EF bin, one row per (arm, bin) (:func:`errors_by_ef_bin` + ``arm``).
        predictions: one row per (arm, seed, TEST video): FileName, PatientID, EF, EF_pred.
        sentence: the plain sentence (synthetic vs real, MAE).
        agreement: :func:`~echoaudit.audit.utility.ef_agreement` of the generator, or None.
        record: JSON-ready details (sets, flagged videos, runs, timings, config).
        agreement_points: one row per synthetic video (FileName, EF_requested,
            EF_predicted) behind ``agreement``, or None.
    """

    table: pd.DataFrame
    by_ef: pd.DataFrame
    predictions: pd.DataFrame
    sentence: str
    agreement: dict | None
    record: dict
    agreement_points: pd.DataFrame | None = None


def train_or_reuse(train: EFVideos, val: EFVideos, run_dir: str | Path, cfg: EFTrainConfig, *,
                   desc: str = "train EF") -> dict:
    """The record of a finished run in ``run_dir`` made with ``cfg`` on the same training
    and validation videos, else train (resuming an interrupted run there).

    Raises:
        CheckpointError: a finished run there made with other settings.
    """
    rec = finished_run(run_dir)
    if rec is None:
        return train_ef(train, val, run_dir, cfg, desc=desc)
    if rec.get("config") != asdict(cfg) or rec.get("train_videos") != videos_digest(train) \
            or rec.get("val_videos") != videos_digest(val):
        raise CheckpointError(f"{run_dir} holds a finished EF run made with other settings or other videos (saved: "
                              f"{rec.get('n_train')} training videos); use a new output folder")
    return rec


def run_utility(real: EFVideos, synthetic: EFVideos, flagged: Sequence[str], out_dir: str | Path,
                cfg: UtilityConfig = UtilityConfig(), *,
                progress: Callable[[float, str], None] | None = None) -> UtilityResult:
    """Train and test the five EF models (x seeds); see the module docstring.

    Args:
        real: the real data set's latent videos, all splits (TRAIN trains, VAL stops, TEST tests).
        synthetic: the synthetic set's latent videos (every video, whatever its split).
        flagged: FileNames of synthetic videos to leave out of set (c).
        out_dir: folder of the run folders (``runs/``).
        cfg: seeds, the training recipe, the bootstrap.
        progress: optional ``progress(fraction, message)`` after each run.

    Raises:
        DatasetError: no real TRAIN, VAL or TEST videos; latents of different shapes.
        ValueError: a flagged name not in the synthetic set.
    """
    out_dir = Path(out_dir)
    parts = {s: real.split(s) for s in ("TRAIN", "VAL", "TEST")}
    for s, part in parts.items():
        if not len(part):
            raise DatasetError(f"the real data set has no {s} videos; the utility comparison needs TRAIN, VAL and TEST")
    if len(synthetic) and synthetic.frame_shape != real.frame_shape:
        raise DatasetError(f"synthetic latents are {synthetic.frame_shape} per frame, real ones {real.frame_shape}: "
                           "encode both with the workspace's VAE at its size")
    sets = training_sets(parts["TRAIN"].names, synthetic.names, flagged, seed=cfg.subset_seed)
    test, val = parts["TEST"], parts["VAL"]
    train_cfg = replace(cfg.train, steps_per_epoch=cfg.train.steps_per_epoch
                        or -(-len(parts["TRAIN"]) // cfg.train.batch_size))
    preds, n_train, notes, runs, pred_rows = {}, {}, {}, [], []
    total = len(ARMS) * len(cfg.seeds)
    done = 0
    t0 = time.perf_counter()
    for arm in ARMS:
        names = sets[arm]
        videos = EFVideos.concat(parts["TRAIN"].select(names["real"]), synthetic.select(names["synthetic"])) \
            if names["real"] or names["synthetic"] else None
        n_train[arm] = 0 if videos is None else len(videos)
        if n_train[arm] < cfg.min_videos:
            notes[arm] = f"not trained: {n_train[arm]} training videos (at least {cfg.min_videos} needed)"
            done += len(cfg.seeds)
            continue
        rows = []
        for seed in cfg.seeds:
            run_dir = out_dir / "runs" / arm / f"seed{seed}"
            rec = train_or_reuse(videos, val, run_dir, replace(train_cfg, seed=int(seed)),
                                 desc=f"EF {ARM_LABELS[arm]} seed {seed}")
            p = predict_ef(load_ef(run_dir / "best"), test, crops=train_cfg.eval_crops)
            rows.append(p)
            runs.append({"arm": arm, "seed": int(seed), "folder": str(run_dir), "n_train": len(videos),
                         "best_epoch": rec["best_epoch"], "epochs": rec["epoch"], "best_val_mae": rec["best_val_mae"],
                         "seconds": rec["seconds"]})
            pred_rows.append(pd.DataFrame({"arm": arm, "seed": int(seed), "FileName": test.names,
                                           "PatientID": test.patients, "EF": test.ef, "EF_pred": p}))
            done += 1
            if progress is not None:
                progress(done / total, f"trained {ARM_LABELS[arm]}, seed {seed}")
        preds[arm] = np.stack(rows)

    boot = dict(n_boot=cfg.n_boot, conf=cfg.conf, seed=0)
    table = utility_table(test.ef, test.patients, preds, n_train, notes=notes, **boot)
    by_ef = pd.concat([errors_by_ef_bin(test.ef, p, test.patients, **boot).assign(arm=arm) for arm, p in preds.items()],
                      ignore_index=True)
    by_ef = by_ef[["arm"] + [c for c in by_ef.columns if c != "arm"]]
    n_patients = len(np.unique(test.patients))
    sentence = utility_sentence(table, n_patients=n_patients, conf=cfg.conf)
    agreement = agreement_points = None
    if "real" in preds and len(synthetic) >= 3:
        model = load_ef(out_dir / "runs" / "real" / f"seed{cfg.seeds[0]}" / "best")
        measured = predict_ef(model, synthetic, crops=train_cfg.eval_crops)
        agreement = ef_agreement(synthetic.ef, measured, **boot)
        agreement_points = pd.DataFrame({"FileName": synthetic.names, "EF_requested": synthetic.ef,
                                         "EF_predicted": measured})
        agreement["model"] = str(out_dir / "runs" / "real" / f"seed{cfg.seeds[0]}" / "best")
    record = {
        "sets": {arm: {"label": ARM_LABELS[arm], "n_real": len(s["real"]), "n_synthetic": len(s["synthetic"])}
                 for arm, s in sets.items()},
        "flagged": sorted(str(n) for n in flagged), "random_subset": sets["synthetic_random"]["synthetic"],
        "test": {"videos": len(test), "patients": n_patients}, "val": {"videos": len(val)},
        "runs": runs, "seconds": time.perf_counter() - t0,
        "config": {"seeds": [int(s) for s in cfg.seeds], "subset_seed": cfg.subset_seed, "min_videos": cfg.min_videos,
                   "n_boot": cfg.n_boot, "conf": cfg.conf, "train": asdict(train_cfg)},
        "rules": {"budget": "every set trains steps_per_epoch = one pass over real TRAIN per epoch, early stopping "
                            "on real VAL", "intervals": "percentile bootstrap over TEST patients (the same draws "
                            "for every set; differences paired); seed_sd: standard deviation over training seeds"},
    }
    predictions = pd.concat(pred_rows, ignore_index=True) if pred_rows else pd.DataFrame(
        columns=["arm", "seed", "FileName", "PatientID", "EF", "EF_pred"])
    return UtilityResult(table, by_ef, predictions, sentence, agreement, record, agreement_points)
