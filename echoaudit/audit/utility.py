"""Downstream utility: does a synthetic set teach an ejection-fraction (EF) model?

The last experiment of Dombrowski et al. (arXiv 2411.04956), after EchoNet-Synthetic
(Reynaud et al., MICCAI 2024): an EF regressor trained on synthetic videos, tested on
real patients, against one trained on the real training set. This module holds the
numbers: pure functions over arrays (no IO, no printing, no training).

Metrics of predictions ``p`` against labels ``y`` (EF in percent) over V videos::

    MAE  = mean |p - y|           RMSE = sqrt(mean (p - y)^2)
    bias = mean (p - y)           R^2  = 1 - sum (p - y)^2 / sum (y - mean y)^2

Intervals (every headline number carries one and names its rule):

- Over TEST **patients**: the percentile bootstrap with patients as the unit. The P test
  patients are sorted by ID; resample ``r`` draws ``rng.integers(0, P, size=(n_boot, P))[r]``
  (``rng = np.random.default_rng(seed)``), and every video of a drawn patient enters as
  often as the patient was drawn. A patient's videos show one heart, so their errors move
  together; resampling videos would count one heart several times as independent evidence
  and narrow the interval.
- Several training seeds: a figure is the mean over seeds of each seed's metric, and
  each resample recomputes that mean on the same drawn patients, so the interval is the
  test-sampling uncertainty of the seed-averaged figure. The **seed spread** (standard
  deviation over seeds, ddof 1) is reported beside it: the training randomness.
- A difference between two training sets (MAE trained on synthetic minus MAE trained on
  real): both on the same drawn patients (paired bootstrap).
- EF agreement of a generator (requested EF vs the real-trained regressor's EF of each
  generated video): the same bootstrap with each generated video its own unit.

Training sets of the comparison (:func:`training_sets`, :data:`ARMS`): (a) the real
TRAIN split; (b) the synthetic set; (c) the synthetic set minus the videos the privacy
filter flagged; (d) a seeded random subset of (b) of (c)'s size, which separates "fewer
videos" from "the flagged videos were the useful ones"; (e) real TRAIN plus (b). All are
tested on the real TEST split.
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from echoaudit.audit.intervals import Estimate
from echoaudit.audit.recall import DEFAULT_EF_BINS

__all__ = [
    "ARMS",
    "ARM_LABELS",
    "METRICS",
    "regression_metrics",
    "patient_bootstrap_samples",
    "bootstrap_metrics",
    "seed_spread",
    "errors_by_ef_bin",
    "training_sets",
    "utility_table",
    "utility_sentence",
    "ef_agreement",
]

ARMS: tuple[str, ...] = ("real", "synthetic", "synthetic_filtered", "synthetic_random", "real_plus_synthetic")
ARM_LABELS: dict[str, str] = {
    "real": "(a) real TRAIN",
    "synthetic": "(b) synthetic",
    "synthetic_filtered": "(c) synthetic minus flagged",
    "synthetic_random": "(d) random subset of (b), size of (c)",
    "real_plus_synthetic": "(e) real TRAIN + synthetic",
}
METRICS: tuple[str, ...] = ("mae", "rmse", "r2", "bias")
_SST_TOL = 1e-12  # a resample whose labels are all equal has no R^2


# ---------------------------------------------------------------------------------------
# argument checks


def _check_conf(conf: float) -> float:
    if isinstance(conf, bool) or not isinstance(conf, numbers.Real) or not 0.0 < float(conf) < 1.0:
        raise ValueError(f"conf must be a number strictly between 0 and 1 (e.g. 0.95), got {conf!r}")
    return float(conf)


def _check_n_boot(n_boot: int) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    return int(n_boot)


def _labels(y_true, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true, dtype=np.float64)
    if y.ndim != 1 or y.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array of EF values, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(y)))} NaN/inf values")
    return y


def _predictions(y_pred, n: int, name: str = "y_pred") -> np.ndarray:
    """(S, V) float64: one row per training seed (a 1-D array is one seed)."""
    p = np.asarray(y_pred, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if p.ndim != 2 or p.shape[1] != n or p.shape[0] < 1:
        raise ValueError(f"{name} must be (V,) or (seeds, V) with V = {n} videos, got shape {np.shape(y_pred)}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(p)))} NaN/inf values")
    return p


def _patient_codes(patients, n: int) -> tuple[np.ndarray, int]:
    pats = np.asarray(patients).astype(str)
    if pats.shape != (n,):
        raise ValueError(f"patients must be (V,) with V = {n} videos, got shape {pats.shape}")
    uniq, codes = np.unique(pats, return_inverse=True)
    return codes, len(uniq)


# ---------------------------------------------------------------------------------------
# metrics


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """MAE, RMSE, R^2 and bias (formulas in the module docstring) of (V,) predictions.

    Returns:
        ``{"mae", "rmse", "r2", "bias", "n"}``; ``r2`` is NaN when every label is equal.
    """
    y = _labels(y_true)
    p = _predictions(y_pred, len(y))
    if p.shape[0] != 1:
        raise ValueError(f"y_pred must be one (V,) array here, got {p.shape[0]} rows")
    e = p[0] - y
    sst = float(((y - y.mean()) ** 2).sum())
    return {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e ** 2).mean())),
            "r2": float(1.0 - (e ** 2).sum() / sst) if sst > _SST_TOL else float("nan"),
            "bias": float(e.mean()), "n": len(y)}


def _metric_table(y: np.ndarray, p: np.ndarray, codes: np.ndarray, n_units: int, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric, (R, S), for R rows of unit weights (R, P) (how often each unit is drawn)."""
    n_p = np.bincount(codes, minlength=n_units).astype(np.float64)
    e = p - y[None]
    per = {k: np.stack([np.bincount(codes, v, minlength=n_units) for v in vals])
           for k, vals in (("abs", np.abs(e)), ("sq", e ** 2), ("err", e))}
    y_sum = np.bincount(codes, y, minlength=n_units)
    yy_sum = np.bincount(codes, y * y, minlength=n_units)
    n = weights @ n_p  # (R,)
    sq = weights @ per["sq"].T  # (R, S)
    sst = weights @ yy_sum - (weights @ y_sum) ** 2 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sst[:, None] > _SST_TOL * np.maximum(1.0, n[:, None]), 1.0 - sq / sst[:, None], np.nan)
    return {"mae": weights @ per["abs"].T / n[:, None], "rmse": np.sqrt(sq / n[:, None]), "r2": r2,
            "bias": weights @ per["err"].T / n[:, None]}


def _draw_weights(n_units: int, n_boot: int, seed) -> np.ndarray:
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    w = np.zeros((n_boot, n_units))
    np.add.at(w, (np.repeat(np.arange(n_boot), n_units), draws.ravel()), 1.0)
    return w


def patient_bootstrap_samples(y_true, y_pred, patients, *, n_boot: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """The bootstrap distribution of each metric, patients as the unit.

    Args:
        y_true: (V,) EF labels (percent).
        y_pred: (V,) predictions, or (S, V): one row per training seed.
        patients: (V,) patient of each video.
        n_boot: resamples.
        seed: seed of the draws (see the module docstring for the rule).

    Returns:
        ``{metric: (n_boot,) float64}`` for each of :data:`METRICS`: the metric of each
        resample, averaged over the S seeds (R^2 NaN where a resample's labels are all equal).
    """
    y = _labels(y_true)
    p = _predictions(y_pred, len(y))
    codes, n_units = _patient_codes(patients, len(y))
    table = _metric_table(y, p, codes, n_units, _draw_weights(n_units, _check_n_boot(n_boot), seed))
    return {k: v.mean(axis=1) for k, v in table.items()}


def _ends(samples: np.ndarray, conf: float) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(s, [0.5 - conf / 2.0, 0.5 + conf / 2.0])
    return float(low), float(high)


def _estimate(value: float, samples: np.ndarray, conf: float, rule: str) -> Estimate:
    # A percentile interval need not hold the point (RMSE and R^2 are biased in small
    # samples); it is reported as it comes.
    low, high = _ends(samples, conf)
    return Estimate(value, low, high, rule)


def bootstrap_metrics(y_true, y_pred, patients, *, n_boot: int = 1000, conf: float = 0.95,
                      seed: int = 0) -> dict[str, Estimate]:
    """Each metric of :data:`METRICS` with its percentile interval, patients as the unit.

    The value is the metric on all test videos (the mean over seeds for (S, V)
    predictions); arguments as :func:`patient_bootstrap_samples`.
    """
    conf = _check_conf(conf)
    y = _labels(y_true)
    p = _predictions(y_pred, len(y))
    codes, n_units = _patient_codes(patients, len(y))
    samples = patient_bootstrap_samples(y, p, patients, n_boot=n_boot, seed=seed)
    point = {k: float(v.mean()) for k, v in _metric_table(y, p, codes, n_units, np.ones((1, n_units))).items()}
    rule = (f"percentile bootstrap over {n_units} patients ({n_boot}x), {round(100 * conf)} %"
            + (f"; mean of {p.shape[0]} training seeds" if p.shape[0] > 1 else ""))
    return {k: _estimate(point[k], samples[k], conf, rule) for k in METRICS}


def seed_spread(values) -> dict[str, float]:
    """Spread of one metric over training seeds: ``{"mean", "sd", "min", "max", "n"}``
    (sd with ddof 1; NaN for a single seed)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 1:
        raise ValueError(f"values must be a non-empty 1-D array (one per seed), got shape {v.shape}")
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def _bin_labels(edges: np.ndarray) -> list[str]:
    labels = [f"[{a:g}, {b:g})" for a, b in zip(edges[:-2], edges[1:-1])]
    return labels + [f"[{edges[-2]:g}, {edges[-1]:g}]"]


def errors_by_ef_bin(y_true, y_pred, patients, *, ef_bins: Sequence[float] = DEFAULT_EF_BINS, n_boot: int = 1000,
                     conf: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Errors per bin of the TRUE EF: where the model fails (the bins of coverage by EF
    bin, :data:`~echoaudit.audit.recall.DEFAULT_EF_BINS`: [e0, e1), ..., last bin closed).

    Returns:
        One row per bin, in bin order (empty bins kept, with NaN): ``group`` (str),
        ``n_videos``, ``n_patients``, ``mae``, ``mae_low``, ``mae_high`` (patient
        bootstrap within the bin), ``rmse``, ``bias`` (mean of predicted minus true:
        negative = underestimated).
    Raises:
        ValueError: bad edges, or labels outside them.
    """
    y = _labels(y_true)
    p = _predictions(y_pred, len(y))
    pats = np.asarray(patients).astype(str)
    _patient_codes(pats, len(y))
    edges = np.asarray(ef_bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
        raise ValueError(f"ef_bins must be at least two strictly increasing finite edges, got {tuple(ef_bins)!r}")
    outside = y[(y < edges[0]) | (y > edges[-1])]
    if outside.size:
        raise ValueError(f"{outside.size} EF label(s) outside [{edges[0]:g}, {edges[-1]:g}], e.g. "
                         f"{outside[:3].tolist()}; widen ef_bins")
    idx = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, edges.size - 2)
    rows = []
    for k, label in enumerate(_bin_labels(edges)):
        m = idx == k
        row = {"group": label, "n_videos": int(m.sum()), "n_patients": len(np.unique(pats[m]))}
        if m.any():
            est = bootstrap_metrics(y[m], p[:, m], pats[m], n_boot=n_boot, conf=conf, seed=seed)
            row.update(mae=est["mae"].value, mae_low=est["mae"].low, mae_high=est["mae"].high,
                       rmse=est["rmse"].value, bias=est["bias"].value)
        else:
            row.update(mae=np.nan, mae_low=np.nan, mae_high=np.nan, rmse=np.nan, bias=np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["group", "n_videos", "n_patients", "mae", "mae_low", "mae_high", "rmse", "bias"])


# ---------------------------------------------------------------------------------------
# the comparison


def training_sets(real_train: Sequence[str], synthetic: Sequence[str], flagged: Sequence[str], *,
                  seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """The five training sets of the comparison, as video names.

    Args:
        real_train: FileNames of the real TRAIN videos.
        synthetic: FileNames of the synthetic set.
        flagged: FileNames of synthetic videos the privacy filter flagged (left out of (c)).
        seed: seed of (d)'s random subset (``default_rng(seed).choice`` without replacement).

    Returns:
        ``{arm: {"real": [...], "synthetic": [...]}}`` for each of :data:`ARMS`, names in
        the order given.

    Raises:
        ValueError: a flagged name that is not in ``synthetic``, or repeated names.
    """
    real, syn = [str(n) for n in real_train], [str(n) for n in synthetic]
    for name, names in (("real_train", real), ("synthetic", syn)):
        dup = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
        if dup:
            raise ValueError(f"{name} repeats video names, e.g. {dup[:3]}")
    known = set(syn)
    flagged = {str(n) for n in flagged}
    unknown = sorted(flagged - known)
    if unknown:
        raise ValueError(f"{len(unknown)} flagged video(s) are not in the synthetic set, e.g. {unknown[:3]}; "
                         f"the set has {len(syn)} videos like {syn[:3]}")
    kept = [n for n in syn if n not in flagged]
    pick = set(np.random.default_rng(seed).choice(len(syn), size=len(kept), replace=False).tolist()) if syn else set()
    subset = [n for i, n in enumerate(syn) if i in pick]
    return {
        "real": {"real": real, "synthetic": []},
        "synthetic": {"real": [], "synthetic": syn},
        "synthetic_filtered": {"real": [], "synthetic": kept},
        "synthetic_random": {"real": [], "synthetic": subset},
        "real_plus_synthetic": {"real": real, "synthetic": syn},
    }


_TABLE_COLUMNS = ["arm", "label", "n_train", "seeds"] + [
    f"{m}{s}" for m in ("mae", "rmse", "r2") for s in ("", "_low", "_high", "_seed_sd")] + [
    "mae_vs_reference", "mae_vs_reference_low", "mae_vs_reference_high", "note"]


def utility_table(y_true, patients, predictions: Mapping[str, np.ndarray], n_train: Mapping[str, int], *,
                  reference: str = "real", notes: Mapping[str, str] | None = None, n_boot: int = 1000,
                  conf: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The comparison table: one row per training set, each tested on the same real videos.

    Args:
        y_true: (V,) EF labels of the real TEST videos.
        patients: (V,) their patients.
        predictions: arm -> (S, V) predictions of the model trained on that arm with each
            of S seeds. An arm of :data:`ARMS` that is missing gets a row of NaN (not trained).
        n_train: arm -> number of training videos.
        reference: the arm differences are taken against (``mae_vs_reference`` = the arm's
            MAE minus the reference's, paired bootstrap; positive = worse).
        notes: arm -> a note for the table (e.g. why it was not trained).
        n_boot, conf, seed: the patient bootstrap; the same draws for every arm.

    Returns:
        DataFrame with columns ``arm``, ``label``, ``n_train``, ``seeds``, then for MAE,
        RMSE and R^2 the value, ``_low``, ``_high`` and ``_seed_sd``, then
        ``mae_vs_reference`` with its ends, and ``note``; rows in :data:`ARMS` order, then
        other arms.
    """
    conf, n_boot = _check_conf(conf), _check_n_boot(n_boot)
    y = _labels(y_true)
    codes, n_units = _patient_codes(patients, len(y))
    weights = _draw_weights(n_units, n_boot, seed)
    ones = np.ones((1, n_units))
    notes = dict(notes or {})
    boot, point, per_seed = {}, {}, {}
    for arm, pred in predictions.items():
        p = _predictions(pred, len(y), f"predictions[{arm!r}]")
        boot[arm] = {k: v.mean(axis=1) for k, v in _metric_table(y, p, codes, n_units, weights).items()}
        seeds = _metric_table(y, p, codes, n_units, ones)
        per_seed[arm] = {k: v[0] for k, v in seeds.items()}
        point[arm] = {k: float(v[0].mean()) for k, v in seeds.items()}
    if reference not in boot and predictions:
        raise ValueError(f"reference {reference!r} has no predictions; arms given: {sorted(predictions)}")
    rows = []
    for arm in [a for a in ARMS if a in predictions or a in n_train] + [a for a in predictions if a not in ARMS]:
        row = {"arm": arm, "label": ARM_LABELS.get(arm, arm), "n_train": int(n_train.get(arm, 0)),
               "seeds": 0, "note": notes.get(arm, "")}
        if arm in boot:
            row["seeds"] = len(per_seed[arm]["mae"])
            for m in ("mae", "rmse", "r2"):
                low, high = _ends(boot[arm][m], conf)
                row.update({m: point[arm][m], f"{m}_low": low, f"{m}_high": high,
                            f"{m}_seed_sd": seed_spread(per_seed[arm][m])["sd"]})
            diff = boot[arm]["mae"] - boot[reference]["mae"]
            d = point[arm]["mae"] - point[reference]["mae"]
            low, high = _ends(diff, conf)
            row.update(mae_vs_reference=d, mae_vs_reference_low=low, mae_vs_reference_high=high)
        elif not row["note"]:
            row["note"] = "not trained"
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=_TABLE_COLUMNS)


def utility_sentence(table: pd.DataFrame, *, arm: str = "synthetic", reference: str = "real", n_patients: int | None = None,
                     conf: float = 0.95) -> str:
    """One plain sentence: how much worse (MAE) the model trained on ``arm`` is on real
    patients than the one trained on ``reference``, with the paired interval."""
    rows = table.set_index("arm")
    if arm not in rows.index or reference not in rows.index or not np.isfinite(rows.at[arm, "mae"]):
        return f"No comparison: the EF model was not trained on {ARM_LABELS.get(arm, arm)}."
    r = rows.loc[arm]
    d, low, high = float(r["mae_vs_reference"]), float(r["mae_vs_reference_low"]), float(r["mae_vs_reference_high"])
    what = "synthetic" if arm == "synthetic" else ARM_LABELS.get(arm, arm)
    ref = "real" if reference == "real" else ARM_LABELS.get(reference, reference)
    word = "worse" if d >= 0 else "better"
    seeds = int(r["seeds"])
    tail = (f" ({round(100 * conf)} % interval {low:+.1f} to {high:+.1f} points, paired bootstrap over "
            f"{f'{n_patients} ' if n_patients else ''}TEST patients; mean of {seeds} training seed{'s' if seeds != 1 else ''})")
    verdict = "" if low > 0 or high < 0 else "; the interval includes no difference"
    return (f"Trained on {what}, the EF model is {abs(d):.1f} EF points {word} (MAE {r['mae']:.1f} vs "
            f"{rows.at[reference, 'mae']:.1f}) on real patients than trained on {ref}{tail}{verdict}.")


def ef_agreement(requested, predicted, *, n_boot: int = 1000, conf: float = 0.95, seed: int = 0) -> dict:
    """How well a generator obeys its EF condition: the real-trained regressor's EF of each
    generated video against the EF it was asked for.

    ``MAE = mean |predicted - requested|``, ``bias = mean (predicted - requested)``,
    Pearson ``r`` of the two; percentile bootstrap over the generated videos (each video
    its own unit: a generated video is its own "patient").

    Args:
        requested: (V,) EF asked of the generator (the synthetic FileList's EF column).
        predicted: (V,) the regressor's EF of each video.

    Returns:
        ``{"n", "mae", "bias", "pearson_r"}`` (each an :class:`Estimate` as a dict) and
        ``"sentence"``; ``pearson_r`` NaN when either side is constant.

    Raises:
        ValueError: fewer than 3 videos, or arrays of different lengths.
    """
    conf, n_boot = _check_conf(conf), _check_n_boot(n_boot)
    req = _labels(requested, "requested")
    pred = _predictions(predicted, len(req), "predicted")[0]
    if len(req) < 3:
        raise ValueError(f"EF agreement needs at least 3 generated videos, got {len(req)}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(req), size=(n_boot, len(req)))
    e = pred - req
    rule = f"percentile bootstrap over {len(req)} generated videos ({n_boot}x), {round(100 * conf)} %"
    mae = _estimate(float(np.abs(e).mean()), np.abs(e)[draws].mean(1), conf, rule)
    bias = _estimate(float(e.mean()), e[draws].mean(1), conf, rule)
    r_point = float(_pearson(req[None], pred[None])[0])
    r = _estimate(r_point, _pearson(req[draws], pred[draws]), conf, rule)
    out = {"n": len(req), "mae": mae.to_dict(), "bias": bias.to_dict(), "pearson_r": r.to_dict()}
    out["sentence"] = (f"The real-trained EF model reads the generated videos {mae.value:.1f} EF points away from the EF "
                       f"they were generated for ({round(100 * conf)} % interval {mae.low:.1f} to {mae.high:.1f}; "
                       f"bias {bias.value:+.1f}), Pearson r "
                       + (f"{r_point:.2f} [{r.low:.2f}, {r.high:.2f}]" if math.isfinite(r_point) else "undefined")
                       + f", over {len(req)} videos.")
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of (R, n) arrays; NaN where a row is constant."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(1) / den, np.nan)
