"""The copy-attack benchmark: does the privacy filter flag disguised copies of training
videos, and how often does it flag real videos of patients nobody trained on?

Queries (every one conformed to one :class:`~echoaudit.data.clips.ClipSpec`, the synthetic
set's clip, so a score means the same thing for all of them):

* **copies**: TRAIN videos (spread over patients, seeded) edited by each attack family at
  each strength (:mod:`echoaudit.data.attacks`);
* **unseen**: real videos of fresh patients that no split of the data set contains
  (the negatives: the false-flag rate);
* **same patient**: new videos of training patients (another acquisition of the same
  heart): a patient re-identification, reported apart from copies;
* **calibration**: the data set's own held-out (VAL + TEST) videos, which set the default
  threshold by the held-out-to-train rule (95th percentile of their best scores).

Scores (higher = more likely a copy), each the query's best over the training set:

* ``reid``: the audit's own clip score from :class:`~echoaudit.engine.AuditEngine` (the
  mean over query frames of each frame's best head logit against a training video, best
  video; see the engine's docstring), on the logit scale;
* ``reid_peak``: the frame-level rule, the best single (query frame, training frame) logit;
* ``pixel``: normalised cross-correlation of 56x56 frames (baseline);
* ``latent_l2``: minus the L2 distance between VAE latents (baseline).

Unit of randomness: videos; copies of one training video share its source (an interval
on a copy share is a lower bound on the true uncertainty). The calibration videos and the
unseen patients are disjoint, so the measured false-flag rate is an honest check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import zoom as nd_zoom
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from echoaudit.data.attacks import ATTACK_FAMILIES, STRENGTHS, apply_attack
from echoaudit.data.clips import ClipSpec, conform_clip

__all__ = ["Clip", "BenchModels", "attack_clips", "score_clips", "tpr_at_fpr", "family_table", "calibration_noise",
           "SCORES"]

SCORES = ("reid", "reid_peak", "first_frame", "pixel", "latent_l2")


@dataclass
class Clip:
    """One benchmark query: (T, H, W) float32 frames at ``fps``; ``kind`` is "copy",
    "unseen", "same_patient" or "calibration"; ``source``/``patient`` the training video /
    patient it comes from ("" for unseen and calibration videos)."""

    name: str
    kind: str
    frames: np.ndarray
    fps: float
    source: str = ""
    patient: str = ""
    family: str = ""
    strength: str = ""


def _spread_videos(dataset, n: int, rng: np.random.Generator) -> list[int]:
    """n video indices spread over patients: one per patient (random order) before any second."""
    pats = np.asarray(dataset.patients)
    order = rng.permutation(len(pats))
    rank = pd.Series(pats[order]).groupby(pats[order]).cumcount().to_numpy()
    return [int(i) for i in order[np.argsort(rank, kind="stable")][:n]]


def attack_clips(dataset, *, n_videos: int, seed: int = 0, size: int = 112,
                 families=ATTACK_FAMILIES, strengths=STRENGTHS) -> list[Clip]:
    """Disguised copies of ``n_videos`` training videos: every family at every strength.

    Copy (video i, family f, strength s) draws from ``default_rng([seed, i, f, s])``.
    """
    rng = np.random.default_rng([seed, 99])
    out = []
    for i in _spread_videos(dataset, n_videos, rng):
        v = dataset.load(i, size=size)
        name, patient = dataset.names[i], str(dataset.patients[i])
        for fi, fam in enumerate(families):
            for si, st in enumerate(strengths):
                x, fps = apply_attack(v.frames, v.fps, fam, st, np.random.default_rng([seed, i, fi, si]))
                out.append(Clip(f"copy_{fam}_{st}_{name}", "copy", x, fps, name, patient, fam, st))
    return out


@dataclass
class BenchModels:
    """The training side of the benchmark: the audit engine over every ``index_stride``-th
    frame of each training video, and the same frames' latents and small pixel frames for
    the baselines."""

    engine: object
    latents: np.ndarray
    pixels: np.ndarray
    first: np.ndarray | None = None  # centred, unit first-frame re-ID features of each training video

    @classmethod
    def build(cls, train, vae, reid, *, index_stride: int = 8, query_stride: int = 4, k: int = 32,
              size: int = 112) -> "BenchModels":
        from echoaudit.engine import AuditEngine, EngineConfig
        from echoaudit.index import EmbeddingIndex, IndexConfig

        reid = reid.eval()
        lat, emb, pix, video, patient, frame = [], [], [], [], [], []
        for i in tqdm(range(len(train)), desc="indexing training frames", unit="video", leave=False):
            x = train.load(i, size=size, frame_step=index_stride).frames
            z = vae.encode(x)
            with torch.no_grad():
                emb.append(reid.embed(z).numpy().astype(np.float32))
            lat.append(z.numpy().reshape(len(x), -1).astype(np.float32))
            pix.append(_small(x))
            video += [train.names[i]] * len(x)
            patient += [str(train.patients[i])] * len(x)
            frame += list(range(0, len(x) * index_stride, index_stride))
        emb_a = np.concatenate(emb)
        meta = pd.DataFrame({"video": video, "patient": patient, "frame": frame})
        index = EmbeddingIndex.build(emb_a, meta, fingerprint={"copybench": True}, config=IndexConfig(kind="flat"))
        engine = AuditEngine(vae, reid, index, emb_a, EngineConfig(frame_stride=query_stride, index_stride=index_stride,
                                                                    k=k, size=size))
        first = _features(reid, emb_a[np.asarray(frame) == 0])
        return cls(engine, np.concatenate(lat), np.concatenate(pix), first)


def _features(reid, emb: np.ndarray) -> np.ndarray:
    """Centred, unit-norm re-ID features of embeddings (the raw sigmoid features of a
    published network, decoded from its embeddings; a project network's embeddings): their
    inner products are Pearson correlations, the published first-frame rule's similarity."""
    from echoaudit.index import center_normalize

    x = np.asarray(emb, np.float32)
    if hasattr(reid, "features_from_embeddings"):
        with torch.no_grad():
            x = reid.features_from_embeddings(torch.from_numpy(np.ascontiguousarray(x))).numpy().astype(np.float32)
    return center_normalize(x)


def _small(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) -> (T, 56*56) centred, unit-norm pixel vectors (for the NCC baseline)."""
    x = nd_zoom(np.asarray(frames, np.float32), (1, 56 / frames.shape[1], 56 / frames.shape[2]), order=1)
    x = x.reshape(len(x), -1)
    x = x - x.mean(axis=1, keepdims=True)
    return (x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)).astype(np.float32)


def score_clips(m: BenchModels, clips: list[Clip], spec: ClipSpec, *, batch_videos: int = 64) -> pd.DataFrame:
    """One row per clip: name, kind, family, strength, source, patient, and per score in
    :data:`SCORES` its value (higher = more similar) plus, for ``reid``, the best
    match's training video and patient (``reid_video``, ``reid_patient``)."""
    from echoaudit.audit.scale import to_logit

    eng = m.engine
    rows = []
    for start in tqdm(range(0, len(clips), batch_videos), desc="scoring clips", unit="batch", leave=False):
        part = clips[start:start + batch_videos]
        sel = [conform_clip(c.frames, c.fps, spec)[:: eng.config.frame_stride] for c in part]
        z_all = eng.vae.encode(np.concatenate(sel))
        e_all = eng.embed_latents(z_all)
        z_all = z_all.numpy().reshape(len(z_all), -1).astype(np.float32)
        bounds = np.cumsum([0] + [len(s) for s in sel])
        for c, s, a, b in zip(part, sel, bounds[:-1], bounds[1:]):
            best = eng.score_embeddings(e_all[a:b], c.name).per_train.iloc[0]
            pix = float((_small(s) @ m.pixels.T).max())
            z = z_all[a:b]
            d2 = (z * z).sum(1)[:, None] - 2 * z @ m.latents.T + (m.latents * m.latents).sum(1)[None]
            rows.append({"name": c.name, "kind": c.kind, "family": c.family, "strength": c.strength,
                         "source": c.source, "patient": c.patient, "n_query_frames": len(s),
                         "reid": float(to_logit(best["score"])), "reid_peak": float(to_logit(best["score_peak"])),
                         "reid_video": str(best["train_video"]), "reid_patient": str(best["train_patient"]),
                         "first_frame": float((m.first @ _features(eng.reid, e_all[a:a + 1])[0]).max())
                         if m.first is not None and len(m.first) else float("nan"),
                         "pixel": pix, "latent_l2": -float(np.sqrt(max(d2.min(), 0.0)))})
    return pd.DataFrame(rows)


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float) -> tuple[float, float]:
    """(TPR, threshold): the share of ``pos`` scoring above the threshold that flags at
    most ``fpr`` of ``neg`` (the smallest such threshold: the ceil(fpr * n)-th highest
    negative; a positive must score strictly above it)."""
    neg = np.sort(np.asarray(neg, np.float64))[::-1]
    pos = np.asarray(pos, np.float64)
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError(f"tpr_at_fpr needs positives and negatives; got {len(pos)} and {len(neg)}")
    if not 0 <= fpr < 1:
        raise ValueError(f"fpr must be in [0, 1); got {fpr}")
    allowed = int(np.floor(fpr * len(neg)))  # negatives that may score above the threshold
    t = neg[allowed] if allowed < len(neg) else -np.inf
    return float((pos > t).mean()), float(t)


def family_table(scores: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per (family, strength), all copies, and same-patient videos: n, share flagged at
    ``threshold`` (reid >= threshold) with its Wilson interval, share whose best match is the
    source patient, TPR at 5 % and 1 % false-flag rate on the unseen videos, and ROC AUC
    (copy vs unseen, ``auc_<score>``) and TPR at 1 % (``tpr1_<score>``) of every score in
    :data:`SCORES`."""
    from echoaudit.audit.intervals import wilson_interval

    neg = scores[scores["kind"] == "unseen"]
    groups = [((f, s), g) for (f, s), g in scores[scores["kind"] == "copy"].groupby(["family", "strength"], sort=False)]
    groups.append((("all copies", ""), scores[scores["kind"] == "copy"]))
    same = scores[scores["kind"] == "same_patient"]
    if len(same):
        groups.append((("same patient, other video", ""), same))
    rows = []
    for (fam, st), g in groups:
        k, n = int((g["reid"] >= threshold).sum()), len(g)
        lo, hi = wilson_interval(k, n, 0.95)
        row = {"family": fam, "strength": st, "n": n, "flagged": k / n, "flagged_low": lo, "flagged_high": hi,
               "right_patient": float((g["reid_patient"] == g["patient"]).mean())}
        for fpr in (0.05, 0.01):
            row[f"tpr_at_{int(fpr * 100)}"] = tpr_at_fpr(g["reid"], neg["reid"], fpr)[0]
        y = np.r_[np.ones(n), np.zeros(len(neg))]
        for sc in (sc for sc in SCORES if sc in scores):
            row[f"auc_{sc}"] = float(roc_auc_score(y, np.r_[g[sc].to_numpy(), neg[sc].to_numpy()]))
            row[f"tpr1_{sc}"] = tpr_at_fpr(g[sc], neg[sc], 0.01)[0]
        rows.append(row)
    return pd.DataFrame(rows)


def calibration_noise(scores: np.ndarray, patients: np.ndarray, n_calibration: int, *, percentile: float = 95.0,
                      method: str = "weibull", n_draws: int = 2000, seed: int = 0) -> dict:
    """How far the false-flag rate can land from the stated one by the luck of which
    patients calibrate, with no shift between calibration and use.

    Repeatedly draws ``n_calibration`` patients of an unseen population (``scores`` of their
    videos, ``patients`` their patient ids), sets the threshold at ``percentile`` of their
    videos' scores, and measures the share of the remaining patients' videos at or above it.
    The unit of randomness is the patient. Returns the median and the 2.5 / 97.5 %
    quantiles of that measured rate, and ``n_draws``.
    """
    scores, patients = np.asarray(scores, np.float64), np.asarray(patients)
    if scores.shape != patients.shape or scores.ndim != 1:
        raise ValueError(f"scores and patients must be 1-D and of one length; got {scores.shape} and {patients.shape}")
    uniq, code = np.unique(patients, return_inverse=True)
    if not 1 <= n_calibration < len(uniq):
        raise ValueError(f"n_calibration must be between 1 and {len(uniq) - 1} (patients given: {len(uniq)}); "
                         f"got {n_calibration}")
    rng = np.random.default_rng(seed)
    rates = np.empty(n_draws)
    for i in range(n_draws):
        cal = np.zeros(len(uniq), bool)
        cal[rng.choice(len(uniq), n_calibration, replace=False)] = True
        t = np.percentile(scores[cal[code]], percentile, method=method)
        rates[i] = float((scores[~cal[code]] >= t).mean())
    lo, med, hi = np.percentile(rates, [2.5, 50.0, 97.5])
    return {"median": float(med), "low": float(lo), "high": float(hi), "n_draws": int(n_draws),
            "n_calibration": int(n_calibration), "n_patients": int(len(uniq))}
