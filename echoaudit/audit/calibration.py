"""Calibration that can be checked: held-out patients split into a part that sets the
privacy threshold and a part that measures the false-flag rate it actually obtains, the
one sentence that states a threshold everywhere (page, CLI, report), and the excess of
flagged synthetic videos over that measured rate.

Pure functions over the engine's score tables (see :mod:`echoaudit.audit.privacy` for
the table, the threshold rules and :class:`~echoaudit.audit.privacy.Threshold`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from echoaudit.audit.privacy import (
    DEFAULT_RULE,
    RULE_NAMES,
    Threshold,
    _check_conf,
    _check_names,
    _check_scores,
    _check_threshold,
    _ordinal,
    _unknown,
    best_matches,
    calibrate_threshold,
)
from echoaudit.audit.scale import to_logit

__all__ = [
    "CalibrationSplit",
    "Calibration",
    "calibration_split",
    "false_flag_rate",
    "calibrate",
    "threshold_sentence",
    "excess_over_null",
    "percentile_of_threshold",
]


@dataclass(frozen=True)
class CalibrationSplit:
    """Held-out videos split by patient: one part sets the threshold, the other checks it.

    Attributes:
        calibration: video names (sorted) of the calibration patients.
        check: video names (sorted) of the check patients.
        calibration_patients, check_patients: the patients (sorted) of each part;
            no patient is in both.
        seed: seed of the ``np.random.Generator`` that shuffled the patients.
        fraction: the share of patients asked for in the calibration part.
    """

    calibration: tuple[str, ...]
    check: tuple[str, ...]
    calibration_patients: tuple[str, ...]
    check_patients: tuple[str, ...]
    seed: int
    fraction: float

    def to_dict(self) -> dict:
        """JSON-ready dict (lists for the name tuples); :meth:`from_dict` reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "CalibrationSplit":
        """Read :meth:`to_dict` back (e.g. from a workspace manifest).

        Raises:
            ValueError: a key missing, or a patient in both parts.
        """
        missing = [k for k in cls.__dataclass_fields__ if k not in d]
        if missing:
            raise ValueError(f"a calibration split needs the keys {list(cls.__dataclass_fields__)}; missing {missing}")
        out = cls(
            calibration=tuple(map(str, d["calibration"])), check=tuple(map(str, d["check"])),
            calibration_patients=tuple(map(str, d["calibration_patients"])),
            check_patients=tuple(map(str, d["check_patients"])), seed=int(d["seed"]), fraction=float(d["fraction"]),
        )
        both = sorted(set(out.calibration_patients) & set(out.check_patients))
        if both:
            raise ValueError(f"a calibration split must keep each patient in one part; in both: {both[:5]}")
        return out


def calibration_split(
    names: Sequence[str], patients: Sequence[str], *, seed: int = 0, fraction: float = 0.5
) -> CalibrationSplit:
    """Split held-out videos by patient into a calibration part and a check part.

    The distinct patients, sorted, are shuffled by ``np.random.default_rng(seed)``; the
    first ``round(fraction * P)`` of them (at least 1, at most P - 1) form the calibration
    part, the rest the check part. Every video goes with its patient, so the check part
    holds only patients the threshold never saw. The result does not depend on the order
    of ``names``.

    Args:
        names: (V,) held-out video names, unique.
        patients: (V,) the patient of each video.
        seed: integer >= 0.
        fraction: share of patients in the calibration part, in (0, 1).

    Returns:
        :class:`CalibrationSplit`.

    Raises:
        ValueError: duplicate names, lengths that differ, missing patients, fewer than 2
            patients, a bad seed or fraction.
    """
    video_names = _check_names(names, "names")
    if patients is None or isinstance(patients, (str, bytes)):
        raise ValueError(f"patients must be a list with one patient per video, got {patients!r}")
    pats = list(patients)
    if len(pats) != len(video_names):
        raise ValueError(f"patients must give one patient per video: {len(video_names)} names, {len(pats)} patients")
    n_missing = sum(p is None or (isinstance(p, float) and np.isnan(p)) for p in pats)
    if n_missing:
        raise ValueError(f"patients has {n_missing} missing value(s); every held-out video needs its patient")
    pats = [str(p) for p in pats]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) or not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be a number in (0, 1), e.g. 0.5; got {fraction!r}")
    unique = sorted(set(pats))
    if len(unique) < 2:
        raise ValueError(f"a calibration/check split needs at least 2 held-out patients, got {len(unique)}")
    order = np.random.default_rng(int(seed)).permutation(len(unique))
    n_cal = min(len(unique) - 1, max(1, int(round(float(fraction) * len(unique)))))
    cal_patients = sorted(unique[i] for i in order[:n_cal])
    cal_set = set(cal_patients)
    return CalibrationSplit(
        calibration=tuple(sorted(v for v, p in zip(video_names, pats) if p in cal_set)),
        check=tuple(sorted(v for v, p in zip(video_names, pats) if p not in cal_set)),
        calibration_patients=tuple(cal_patients),
        check_patients=tuple(sorted(set(unique) - cal_set)),
        seed=int(seed),
        fraction=float(fraction),
    )


def false_flag_rate(
    heldout_scores: pd.DataFrame,
    threshold: float | Threshold,
    *,
    videos: Sequence[str],
    n_patients: int | None = None,
    conf: float = 0.95,
) -> dict:
    """The share of real unseen videos a threshold flags, measured on the check part.

    ``rate = k / n`` with n = len(videos) and k = #{h in videos : max_v score(h, v) >= t}
    (videos never shortlisted have best score 0); interval = Wilson score interval.

    Args:
        heldout_scores: score table whose queries are real held-out videos; rows of
            other queries (the calibration part) are ignored.
        threshold: t in [0, 1] or a :class:`Threshold`.
        videos: the check videos (no patient of them may have set the threshold).
        n_patients: how many patients those videos come from (for the sentence), or None.
        conf: confidence level in (0, 1).

    Returns:
        dict ``k``, ``n``, ``rate``, ``low``, ``high``, ``conf``, ``n_patients``, ``rule``.

    Raises:
        ValueError: no videos, bad scores, threshold or conf.
    """
    t = _check_threshold(threshold)
    conf = _check_conf(conf)
    wanted = _check_names(videos, "videos")
    if not wanted:
        raise ValueError("videos is empty: a false-flag rate needs at least one check video")
    table = _check_scores(heldout_scores, "heldout_scores")
    part = table[table["query"].astype(str).isin(set(wanted))]
    best = best_matches(part, queries=wanted)
    k, n = int((best["score"].to_numpy() >= t).sum()), len(wanted)
    from echoaudit.audit.intervals import wilson_interval

    low, high = wilson_interval(k, n, conf)
    return {
        "k": k, "n": n, "rate": k / n, "low": float(low), "high": float(high), "conf": conf,
        "n_patients": None if n_patients is None else int(n_patients),
        "rule": f"share of check videos whose best score reaches the threshold, Wilson {conf * 100:g} % interval",
    }


def _clip_text(clip: Mapping | None) -> str:
    if not clip:
        return "clip length not recorded"
    return f"clips of {int(clip['frames'])} frames at {float(clip['fps']):g} fps"


def threshold_sentence(threshold: Threshold, *, check: Mapping | None = None, clip: object = None) -> str:
    """The one sentence that states a threshold everywhere (page, CLI, report).

    E.g. "Threshold 7.21 (re-ID logit) is the 95th percentile of 45 calibration videos'
    best scores against the training set (held-out-to-train rule, clips of 32 frames at
    25 fps): 5 % of real unseen videos should be flagged; measured on 46 videos of 23 check
    patients: 4.3 % [1.2, 14.5] (Wilson 95 %)."

    Args:
        threshold: the :class:`Threshold`.
        check: :func:`false_flag_rate` at its value, or None ("not measured").
        clip: the clip spec the scores were computed on (a ``ClipSpec`` or a dict with
            ``fps`` and ``frames``), or None ("not recorded").
    """
    if not isinstance(threshold, Threshold):
        raise ValueError(f"threshold must be a Threshold, got {type(threshold).__name__}")
    clip = clip.to_dict() if hasattr(clip, "to_dict") else clip
    rule = RULE_NAMES.get(threshold.rule, threshold.rule)
    if threshold.rule == "train_to_heldout":
        over = (f"of {threshold.n} training videos' best scores against {threshold.n_heldout} calibration videos "
                f"({rule}, {_clip_text(clip)})")
    else:
        over = f"of {threshold.n} calibration videos' best scores against the training set ({rule}, {_clip_text(clip)})"
    head = (f"Threshold {to_logit(threshold.value):.2f} (re-ID logit) is the {_ordinal(threshold.percentile)} "
            f"percentile {over}: {100.0 - threshold.percentile:g} % of real unseen videos should be flagged; ")
    if check is None:
        return head + "measured false-flag rate: not measured (this workspace has no check part of held-out patients)."
    who = (f"{check['n']} videos of {check['n_patients']} check patients" if check.get("n_patients") is not None
           else f"{check['n']} check videos")
    return (head + f"measured on {who}: {100 * check['rate']:.1f} % [{100 * check['low']:.1f}, "
            f"{100 * check['high']:.1f}] (Wilson {100 * check['conf']:g} %).")


@dataclass(frozen=True)
class Calibration:
    """A threshold with the false-flag rate it actually obtains on unseen patients.

    Attributes:
        threshold: the :class:`Threshold`, set on the calibration part.
        check: :func:`false_flag_rate` at ``threshold.value`` on the check part, or None
            when there is none (a workspace built before the split: "not measured").
        clip: ``{"fps", "frames"}`` of the clips the scores were computed on, or None.
        split: the :class:`CalibrationSplit`, or None.
    """

    threshold: Threshold
    check: dict | None = None
    clip: dict | None = None
    split: CalibrationSplit | None = None

    @property
    def value(self) -> float:
        return self.threshold.value

    def sentence(self) -> str:
        """:func:`threshold_sentence` of this calibration."""
        return threshold_sentence(self.threshold, check=self.check, clip=self.clip)

    def to_dict(self) -> dict:
        """JSON-ready: the threshold's fields, ``logit`` / ``logit_low`` / ``logit_high``,
        ``check``, ``clip``, ``sentence`` (also as ``describe``). The split's video lists
        are left out (the manifest has them)."""
        t = self.threshold
        sentence = self.sentence()
        return t.to_dict() | {
            "logit": to_logit(t.value), "logit_low": to_logit(t.low), "logit_high": to_logit(t.high),
            "rule_name": RULE_NAMES.get(t.rule, t.rule), "check": self.check, "clip": self.clip,
            "sentence": sentence, "describe": sentence,
        }


def calibrate(
    heldout_scores: pd.DataFrame,
    *,
    train_videos: Sequence[str],
    heldout_videos: Sequence[str],
    split: CalibrationSplit | None = None,
    rule: str = DEFAULT_RULE,
    percentile: float = 95.0,
    clip: object = None,
    n_boot: int = 1000,
    conf: float = 0.95,
    seed: int = 0,
) -> Calibration:
    """Set the threshold on the calibration part, measure it on the check part.

    1. the calibration videos: ``split.calibration`` (all ``heldout_videos`` when
       ``split`` is None);
    2. :func:`calibrate_threshold` on their rows of ``heldout_scores`` (``rule``,
       ``percentile``, bootstrap ``n_boot`` / ``conf`` / ``seed``);
    3. :func:`false_flag_rate` at that threshold on ``split.check`` (None without a split).

    Args:
        heldout_scores: score table of all real held-out videos (both parts).
        train_videos: all training videos.
        heldout_videos: all held-out videos; the split's videos must be among them.
        split: :func:`calibration_split` of the held-out videos, or None.
        rule: one of ``THRESHOLD_RULES``.
        percentile: p in (0, 100].
        clip: the clip spec the scores were computed on (``ClipSpec`` or dict), recorded.
        n_boot, conf, seed: as :func:`calibrate_threshold`.

    Returns:
        :class:`Calibration`.

    Raises:
        ValueError: split videos that are not held-out videos, an empty calibration part,
            and everything :func:`calibrate_threshold` raises.
    """
    table = _check_scores(heldout_scores, "heldout_scores")
    held = _check_names(heldout_videos, "heldout_videos")
    if split is not None and not isinstance(split, CalibrationSplit):
        raise ValueError(f"split must be a CalibrationSplit or None, got {type(split).__name__}")
    if split is None:
        cal, check = held, None
    else:
        unknown = _unknown(list(split.calibration) + list(split.check), held)
        if unknown:
            raise ValueError(f"split has videos that are not held-out videos: {unknown[:5]} ({len(unknown)} in all)")
        cal, check = list(split.calibration), list(split.check)
    if not cal:
        raise ValueError("the calibration part is empty: a threshold needs calibration videos")
    part = table[table["query"].astype(str).isin(set(cal))]
    thr = calibrate_threshold(part, rule=rule, percentile=percentile, train_videos=train_videos,
                              heldout_videos=cal, n_boot=n_boot, conf=conf, seed=seed)
    measured = None
    if check:
        measured = false_flag_rate(table, thr.value, videos=check, n_patients=len(split.check_patients), conf=conf)
    clip = clip.to_dict() if hasattr(clip, "to_dict") else (dict(clip) if clip else None)
    return Calibration(threshold=thr, check=measured, clip=clip, split=split)


def excess_over_null(flags: Mapping, check: Mapping | None, conf: float = 0.95) -> dict:
    """The privacy headline: flagged synthetic share minus the real false-flag rate.

    ``d = k1 / n1 - k2 / n2`` with k1 of n1 synthetic videos flagged (:func:`flag_summary`)
    and k2 of n2 real check videos flagged at the same threshold (:func:`false_flag_rate`);
    interval: Newcombe's hybrid score interval (``intervals.newcombe_interval``). In
    videos: ``d * n1`` synthetic videos flagged more than chance.

    Args:
        flags: :func:`flag_summary` (``n_flagged``, ``n_videos``).
        check: :func:`false_flag_rate` at the same threshold, or None (not measured).
        conf: confidence level in (0, 1).

    Returns:
        dict ``measured`` (bool), ``sentence`` (plain words), and when measured:
        ``excess`` / ``low`` / ``high`` (shares), ``videos`` / ``videos_low`` /
        ``videos_high`` (the same times n1), ``expected`` (videos chance flags: n1 * k2 / n2),
        ``n_flagged``, ``n_videos``, ``null_rate``, ``conf``, ``rule``.
    """
    conf = _check_conf(conf)
    for key in ("n_flagged", "n_videos"):
        if key not in flags:
            raise ValueError(f"flags must be a flag_summary() dict with n_flagged and n_videos; it lacks {key!r}")
    k1, n1 = int(flags["n_flagged"]), int(flags["n_videos"])
    if check is None:
        return {"measured": False, "n_flagged": k1, "n_videos": n1,
                "sentence": (f"{k1} of {n1} synthetic videos flagged; excess over chance not measured "
                             "(this workspace has no check part of held-out patients).")}
    for key in ("k", "n"):
        if key not in check:
            raise ValueError(f"check must be a false_flag_rate() dict with k and n; it lacks {key!r}")
    from echoaudit.audit.intervals import newcombe_interval

    k2, n2 = int(check["k"]), int(check["n"])
    d, low, high = newcombe_interval(k1, n1, k2, n2, conf)
    null = k2 / n2
    sentence = (f"{d * n1:.1f} synthetic videos more than chance ({conf * 100:g} % interval {low * n1:.1f} to "
                f"{high * n1:.1f}): {k1} of {n1} flagged, where the {100 * null:.1f} % false-flag rate measured on "
                f"{n2} real unseen videos expects {null * n1:.1f}.")
    return {
        "measured": True, "excess": d, "low": low, "high": high,
        "videos": d * n1, "videos_low": low * n1, "videos_high": high * n1, "expected": null * n1,
        "n_flagged": k1, "n_videos": n1, "null_rate": null, "conf": conf,
        "rule": f"flagged share minus measured false-flag rate, Newcombe hybrid score {conf * 100:g} % interval",
        "sentence": sentence,
    }


def percentile_of_threshold(threshold_value: float, heldout_best: Sequence[float] | np.ndarray | pd.Series) -> float:
    """Where a threshold sits among the calibration best scores, in percent.

    ``P(t) = 100 * #{i : b_i < t} / n``; ``100 - P(t)`` is the share (in %) of real
    unseen videos the threshold would flag (b_i >= t). For the dashboard slider.

    Args:
        threshold_value: t in [0, 1].
        heldout_best: the best scores b_i, shape (n,), e.g. :func:`calibration_scores`.

    Returns:
        float in [0, 100].
    """
    t = _check_threshold(threshold_value, "threshold_value")
    best = np.asarray(heldout_best, dtype=np.float64)
    if best.ndim != 1 or best.size == 0:
        raise ValueError(f"heldout_best must be a non-empty 1-D array of scores, got shape {best.shape}")
    if not np.all(np.isfinite(best)):
        raise ValueError("heldout_best has NaN or infinite values; allowed: scores in [0, 1]")
    return float(100.0 * np.mean(best < t))
