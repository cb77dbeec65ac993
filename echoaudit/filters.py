"""A second privacy filter beside the workspace's own, and where the two disagree.

The number of memorized samples depends on which privacy filter was trained (the
EchoNet-Synthetic paper's own open question). A workspace can therefore hold further
re-ID networks as *filters*: each gives every synthetic video a verdict, and the Privacy
page, the report and ``echoaudit filters compare`` show both verdicts per video, their
agreement (Cohen's kappa with a bootstrap interval over synthetic videos) and the list of
videos only one filter flags.

Two scorers (``scorer``):

* ``"published"``: EchoNet-Synthetic's filter (``echosyn/privacy/apply.py``): the first
  frame of each video, the Pearson correlation of the network's sigmoid features, and
  tau = the 95th percentile over TRAIN videos of each one's highest correlation with a
  held-out video; a synthetic video is flagged when its best correlation with a TRAIN
  first frame is >= tau (:mod:`echoaudit.published_scorer`). Needs a published-format
  network. Held-out videos are the workspace's TEST videos (the published rule's), all
  held-out videos when it has none. Latents come from the workspace's VAE; a real
  video's first frame is rescaled to [-1, 1] by the min and max of its every
  ``index_stride``-th frame (the published data set uses every frame), the synthetic
  first frames by the min and max of the whole set (as ``apply.py`` does per batch).
  ``echoaudit published-scores`` runs the exact published mode on a ``Latents/`` folder.
* ``"video"``: EchoAudit's whole-video rule with the other network: its own index of
  TRAIN frames, the held-out clips scored on the workspace's clip spec, the threshold by
  the workspace's default rule (held-out-to-train, 95th percentile, on the same
  calibration patients), a synthetic video flagged when its clip score reaches it.

Layout: ``filters/<name>/`` holds ``model/`` (a copy of the network), ``filter.json``
(scorer, threshold, rule, fingerprint) and ``verdicts.parquet`` (one row per synthetic
video of every set: ``set``, ``query``, ``score``, ``flagged``, ``train_video``); the
``video`` scorer also keeps ``index/`` and ``heldout.parquet``. The folder is written
whole, then the manifest lists it (``manifest["filters"][name]``); adding a filter of
the same name replaces it the same way.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from echoaudit.errors import EchoAuditError
from echoaudit.fileio import atomic_dir, read_json, write_json

__all__ = ["SCORERS", "VERDICT_COLUMNS", "add_filter", "filter_names", "filter_info", "filter_verdicts",
           "Agreement", "compare_verdicts", "kappa", "primary_verdicts", "compare_with_primary",
           "filters_view"]

SCORERS = ("published", "video")
VERDICT_COLUMNS = ("set", "query", "score", "flagged", "train_video")
MANIFEST = "manifest.json"


# --------------------------------------------------------------------------- agreement


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two boolean verdicts (``sklearn.metrics.cohen_kappa_score``); 1.0
    when both filters give one and the same verdict to every video (chance agreement is
    then 1 and the ratio 0 / 0: the agreement is perfect)."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"kappa needs two non-empty verdict vectors of one length; got {a.shape} and {b.shape}")
    if np.array_equal(a, b) and (a.all() or not a.any()):
        return 1.0
    return float(cohen_kappa_score(a, b))


@dataclass
class Agreement:
    """Two filters' verdicts on one synthetic set.

    Attributes:
        n: synthetic videos compared (the unit of randomness for the interval).
        both, only_first, only_second, neither: counts of the 2 x 2 table.
        kappa, low, high: Cohen's kappa and its percentile-bootstrap interval (resampling
            synthetic videos, seeded).
        table: one row per video: ``query``, ``flagged_first``, ``flagged_second``,
            ``score_first``, ``score_second``, ``train_first``, ``train_second``,
            ``agree`` (bool); disagreements first.
    """

    n: int
    both: int
    only_first: int
    only_second: int
    neither: int
    kappa: float
    low: float
    high: float
    conf: float
    table: pd.DataFrame

    @property
    def disagreements(self) -> pd.DataFrame:
        return self.table[~self.table["agree"]].reset_index(drop=True)

    def sentence(self, first: str, second: str) -> str:
        agree = self.both + self.neither
        return (f"{first} and {second} agree on {agree} of {self.n} synthetic videos (both flag {self.both}, "
                f"neither {self.neither}); only {first} flags {self.only_first}, only {second} flags "
                f"{self.only_second}. Cohen's kappa {self.kappa:.2f} [{self.low:.2f}, {self.high:.2f}] "
                f"({100 * self.conf:g} % bootstrap over synthetic videos; 1 = the filters agree beyond chance on "
                "every video, 0 = no more than chance).")

    def to_dict(self) -> dict:
        return {"n": self.n, "both": self.both, "only_first": self.only_first, "only_second": self.only_second,
                "neither": self.neither, "kappa": self.kappa, "low": self.low, "high": self.high, "conf": self.conf}


def compare_verdicts(first: pd.DataFrame, second: pd.DataFrame, *, n_boot: int = 2000, conf: float = 0.95,
                     seed: int = 0) -> Agreement:
    """Agreement of two verdict tables (``query``, ``flagged``, ``score``, ``train_video``)
    over the videos both judged. Raises ValueError when they share no video."""
    from scipy.stats import bootstrap

    cols = ["query", "flagged", "score", "train_video"]
    for what, t in (("first", first), ("second", second)):
        missing = [c for c in cols if c not in t.columns]
        if missing:
            raise ValueError(f"the {what} verdict table lacks columns {missing}")
    m = first[cols].merge(second[cols], on="query", suffixes=("_first", "_second"), validate="one_to_one")
    if m.empty:
        raise ValueError("the two filters judged no video in common")
    a, b = m["flagged_first"].to_numpy(bool), m["flagged_second"].to_numpy(bool)
    k = kappa(a, b)
    if len(m) >= 2:
        res = bootstrap((a, b), kappa, paired=True, vectorized=False, n_resamples=n_boot, confidence_level=conf,
                        method="percentile", random_state=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    else:
        low, high = float("nan"), float("nan")
    m = m.rename(columns={"train_video_first": "train_first", "train_video_second": "train_second"})
    m["agree"] = a == b
    m = m.sort_values(["agree", "query"], kind="mergesort").reset_index(drop=True)
    return Agreement(n=len(m), both=int((a & b).sum()), only_first=int((a & ~b).sum()),
                     only_second=int((~a & b).sum()), neither=int((~a & ~b).sum()), kappa=k, low=low, high=high,
                     conf=conf, table=m)


# --------------------------------------------------------------------------- reading


def filter_names(ws) -> list[str]:
    return list(ws.manifest.get("filters") or {})


def filter_info(ws, name: str) -> dict:
    """``filter.json`` of filter ``name`` (scorer, threshold, rule, fingerprint...)."""
    filters = ws.manifest.get("filters") or {}
    if name not in filters:
        raise EchoAuditError(f"no filter {name!r} in this workspace; it has: {', '.join(filters) or 'none'} "
                             "(add one with `echoaudit filters add`)")
    return read_json(ws.path(filters[name]["path"]) / "filter.json")


def filter_verdicts(ws, name: str, set_name: str | None = None) -> pd.DataFrame:
    """The verdicts of filter ``name`` (one set, or every set)."""
    info = filter_info(ws, name)
    df = pd.read_parquet(ws.path(ws.manifest["filters"][name]["path"]) / "verdicts.parquet")
    missing = [c for c in VERDICT_COLUMNS if c not in df.columns]
    if missing:
        raise EchoAuditError(f"filter {name!r}: verdicts.parquet lacks columns {missing}; add the filter again")
    if set_name is not None:
        df = df[df["set"] == set_name].reset_index(drop=True)
        if df.empty:
            raise EchoAuditError(f"filter {name!r} has no verdicts for set {set_name!r} (it was added before the set: "
                                 f"run `echoaudit filters add` again); it has: {', '.join(info.get('sets', []))}")
    return df


# --------------------------------------------------------------------------- scoring


def _published_first(ws, dataset, stride: int) -> np.ndarray:
    """(V, C, h, w) first-frame latents, each rescaled by its own video's min and max
    over every ``stride``-th frame (the workspace's VAE)."""
    from echoaudit.published_scorer import normalize_per_video

    out = []
    for i in range(len(dataset)):
        frames = dataset.load(i, size=ws.size, frame_step=stride).frames  # decode only the frames used
        lat = ws.vae.encode(frames).numpy()
        out.append(normalize_per_video(lat, name=f"latents of {dataset.names[i]}")[0])
    return np.stack(out).astype(np.float32)


def _score_published(ws, model, percentile: float, progress) -> tuple[pd.DataFrame, dict]:
    from echoaudit.models.published import PublishedReID
    from echoaudit.published_scorer import normalize_batch, score_published

    if not isinstance(model, PublishedReID):
        raise EchoAuditError("the published scorer needs a network in the published format (config.json naming a "
                             "siamese_architecture and <name>_best_network.pth); use --scorer video for this one")
    stride = int(ws.manifest["engine"].get("index_stride", 4))
    held = ws.heldout.split("TEST") if "TEST" in set(ws.heldout.table["Split"]) else ws.heldout
    progress(0.05, "published filter: first frames of the training videos")
    train_first = _published_first(ws, ws.train, stride)
    progress(0.4, "published filter: first frames of the held-out videos")
    held_first = _published_first(ws, held, stride)
    rows, tau, n_sets = [], None, len(ws.synthetic_names)
    for j, s in enumerate(ws.synthetic_names):
        syn = ws.synthetic(s)
        first = np.stack([ws.vae.encode(syn.load(i, size=ws.size, num_frames=1).frames).numpy()[0]
                          for i in range(len(syn))])
        res = score_published(model, train_first=train_first, train_names=ws.train.names, heldout_first=held_first,
                              synthetic_first=normalize_batch(first, name=f"first frames of set {s}"),
                              synthetic_names=syn.names, percentile=percentile)
        tau = res.tau
        rows.append(pd.DataFrame({"set": s, "query": res.table["synth_path"], "score": res.table["tau"].astype(float),
                                  "flagged": res.flagged, "train_video": res.table["real_path"]}))
        progress(0.6 + 0.4 * (j + 1) / max(1, n_sets), f"published filter: set {s}")
    if tau is None:  # no synthetic set yet: tau all the same
        from echoaudit.published_scorer import published_features, published_threshold

        tau = published_threshold(published_features(model, train_first), published_features(model, held_first),
                                  percentile=percentile)[0]
    info = {"threshold": float(tau), "scale": "Pearson correlation of first-frame features",
            "rule": f"EchoNet-Synthetic: tau = {percentile:g}th percentile over {len(ws.train)} TRAIN videos of each "
                    f"one's best first-frame correlation with {len(held)} held-out videos; flagged when a synthetic "
                    "first frame's best correlation with a TRAIN first frame is >= tau",
            "n_train": len(ws.train), "n_heldout": len(held)}
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(VERDICT_COLUMNS))), info


def _score_video(ws, reid_folder: Path, tmp: Path, percentile: float, progress) -> tuple[pd.DataFrame, dict]:
    from echoaudit.audit.calibration import calibrate
    from echoaudit.audit.privacy import DEFAULT_RULE, flag_videos
    from echoaudit.audit.scale import to_logit
    from echoaudit.data.prefetch import VideoPrefetcher
    from echoaudit.engine import AuditEngine, EngineConfig, build_training_index
    from echoaudit.fileio import sha256_tree
    from echoaudit.models.reid import load_reid
    from echoaudit.scoring import (
        audit_synthetic_set,
        embed_video_latents,
        latent_store_for,
        stored_latents,
        train_latent_store,
    )

    reid = load_reid(reid_folder).eval()
    ecfg = EngineConfig(**ws.manifest["engine"])
    vae_sha = ws.manifest["models"]["vae"]["sha256"]
    fingerprint = {"vae": vae_sha, "reid": sha256_tree(reid_folder), "index_stride": ecfg.index_stride,
                   "size": ecfg.size}
    # The workspace's stored latents (WS/latents/): the VAE ran once, when the workspace was built.
    train_lat = train_latent_store(ws.root, ws.train, vae_sha256=vae_sha, engine_config=ecfg)
    with VideoPrefetcher(ws.train, size=ecfg.size, frame_step=ecfg.index_stride) as videos:
        index, emb = build_training_index(
            ws.train, tmp / "index",
            embed_video=lambda i: embed_video_latents(reid, stored_latents(train_lat, videos, i,
                                                                           lambda f: ws.vae.encode(f).numpy())),
            fingerprint=fingerprint, index_stride=ecfg.index_stride,
            progress=lambda f, m: progress(0.05 + 0.35 * f, f"second filter: indexing training frames: {m}"))
    engine = AuditEngine(ws.vae, reid, index, emb, ecfg)
    top = int(ws.manifest.get("build", {}).get("top", 10))
    held = audit_synthetic_set(engine, ws.heldout, "real held-out", top=top, clip=ws.clip_spec, temporal_videos=[],
                               latents=latent_store_for(ws.root, "heldout", ws.heldout, vae_sha256=vae_sha,
                                                        engine_config=ecfg, clip=ws.clip_spec),
                               progress=lambda f, m: progress(0.4 + 0.3 * f, f"second filter: {m}"))
    held.scores.to_parquet(tmp / "heldout.parquet", index=False)
    cal = calibrate(held.scores, train_videos=ws.train.names, heldout_videos=ws.heldout.names,
                    split=ws.calibration_split, rule=DEFAULT_RULE, percentile=percentile, clip=ws.clip_spec)
    rows, n_sets = [], len(ws.synthetic_names)
    for j, s in enumerate(ws.synthetic_names):
        syn = ws.synthetic(s)
        res = audit_synthetic_set(engine, syn, s, top=top, clip=ws.clip_spec, temporal_videos=[],
                                  latents=latent_store_for(ws.root, f"set_{s}", syn, vae_sha256=vae_sha,
                                                           engine_config=ecfg, clip=ws.clip_spec))
        f = flag_videos(res.scores, cal.value, queries=syn.names)
        rows.append(f.assign(set=s)[list(VERDICT_COLUMNS)])
        progress(0.7 + 0.3 * (j + 1) / max(1, n_sets), f"second filter: set {s}")
    info = {"threshold": float(cal.value), "threshold_logit": float(to_logit(cal.value)), "scale": "re-ID probability",
            "rule": cal.sentence(), "check": cal.check}
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(VERDICT_COLUMNS))), info


def add_filter(ws, name: str, reid: str | Path, *, scorer: str = "auto", percentile: float = 95.0,
               progress=None) -> dict:
    """Add (or replace) filter ``name``: copy the network into the workspace, give every
    synthetic video of every set its verdict, then list the filter in the manifest.
    ``scorer``: ``"published"``, ``"video"`` or ``"auto"`` (published for a published-format
    network, else video). Returns the filter's ``filter.json``.

    Raises:
        EchoAuditError: a bad name or scorer; CheckpointError: a network that does not load.
        Nothing in the workspace changes on an error.
    """
    from echoaudit.fileio import sha256_tree
    from echoaudit.models.published import is_published_reid
    from echoaudit.models.reid import load_reid
    from echoaudit.workspace import load_manifest

    if not name or not name.replace("_", "").replace("-", "").isalnum() or len(name) > 64:
        raise EchoAuditError(f"filter name must be 1-64 letters, digits, '-' or '_'; got {name!r}")
    if name == "primary":
        raise EchoAuditError("'primary' names the workspace's own re-ID; choose another filter name")
    src = Path(reid)
    if not src.is_dir():
        raise EchoAuditError(f"{src} is not a folder (a re-ID model folder: the project's or the published format)")
    if scorer == "auto":
        scorer = "published" if is_published_reid(src) else "video"
    if scorer not in SCORERS:
        raise EchoAuditError(f"scorer must be one of {', '.join(SCORERS)} or auto; got {scorer!r}")
    if not 0 < float(percentile) <= 100:
        raise EchoAuditError(f"percentile must be in (0, 100]; got {percentile!r}")
    model = load_reid(src).eval()  # refuses a damaged or hostile folder before anything is written
    report = progress or (lambda f, m: None)
    root = ws.root
    dest = root / "filters" / name
    with atomic_dir(dest) as tmp:
        shutil.copytree(src, tmp / "model")
        if scorer == "published":
            verdicts, info = _score_published(ws, model, float(percentile), report)
        else:
            verdicts, info = _score_video(ws, tmp / "model", tmp, float(percentile), report)
        verdicts = verdicts.astype({"score": float, "flagged": bool, "query": str, "train_video": str, "set": str})
        verdicts.to_parquet(tmp / "verdicts.parquet", index=False)
        info = {"name": name, "scorer": scorer, "percentile": float(percentile), "source": str(src.resolve()),
                "sha256": sha256_tree(tmp / "model"), "kind": type(model).__name__,
                "sets": list(ws.synthetic_names), **info}
        write_json(tmp / "filter.json", info)
    manifest = load_manifest(root)  # the file as it is now, not as ws was opened
    manifest.setdefault("filters", {})[name] = {"path": f"filters/{name}", "scorer": scorer, "sha256": info["sha256"]}
    write_json(root / MANIFEST, manifest)
    ws.manifest = manifest
    return info


# --------------------------------------------------------------------------- the workspace's own filter


def primary_verdicts(ws, set_name: str, threshold: float | None = None) -> pd.DataFrame:
    """The workspace's own verdicts on ``set_name`` (``query``, ``flagged``, ``score``,
    ``train_video``...) at ``threshold`` (a probability; None: the calibrated default)."""
    from echoaudit.audit.privacy import flag_videos

    t = ws.threshold().value if threshold is None else float(threshold)
    return flag_videos(ws.synthetic_scores(set_name), t, queries=ws.synthetic(set_name).names)


def compare_with_primary(ws, name: str, set_name: str, threshold: float | None = None, *,
                         n_boot: int = 2000, seed: int = 0) -> Agreement:
    """:func:`compare_verdicts` of the workspace's own filter (first) and filter ``name``
    (second) on ``set_name``."""
    return compare_verdicts(primary_verdicts(ws, set_name, threshold), filter_verdicts(ws, name, set_name),
                            n_boot=n_boot, seed=seed)


def filters_view(ws, set_name: str, threshold: float | None = None, *, n_boot: int = 2000) -> list[dict]:
    """What the Privacy page and the report show for each second filter on ``set_name``:
    ``name``, ``info`` (filter.json), ``agreement`` (:meth:`Agreement.to_dict`),
    ``sentence``, ``disagreements`` (DataFrame), or ``missing`` (a sentence) for a filter
    added before the set existed."""
    out = []
    for name in filter_names(ws):
        info = filter_info(ws, name)
        if set_name not in info.get("sets", []):
            out.append({"name": name, "info": info, "missing": f"filter {name!r} was added before set {set_name!r}; "
                        f"run `echoaudit filters add --name {name}` again to score it"})
            continue
        agr = compare_with_primary(ws, name, set_name, threshold, n_boot=n_boot)
        out.append({"name": name, "info": info, "agreement": agr.to_dict(),
                    "sentence": agr.sentence("the workspace filter", f"filter {name!r}"),
                    "disagreements": agr.disagreements})
    return out
