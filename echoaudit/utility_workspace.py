"""Downstream EF utility of a workspace's synthetic set, as ``echoaudit eval utility`` and
the demo's background build run it: the five training sets of
:func:`echoaudit.downstream.run_utility` (real TRAIN; the synthetic set; it without the
flagged videos; a random subset of that size; real + synthetic), each an EF model tested
on the real TEST videos, written to ``WS/utility/<set>/`` (where the Utility page and the
report read them) and recorded in the workspace manifest (``manifest["utility"][set]``:
folder, sentence, seeds, epochs, when).

The demo build lists the sets to measure in ``manifest["utility_pending"]`` (from
``BuildConfig.utility``); :func:`echoaudit.build.complete_workspace` runs them after the
synthetic sets, one at a time, each removed from the list once recorded. EF training runs
are reused when they finished before an interruption, so a stopped build resumes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from echoaudit.errors import EchoAuditError

__all__ = ["workspace_flagged", "real_videos", "synthetic_videos", "run_workspace_utility", "record_utility"]


def workspace_flagged(ws, name: str, flags_csv: Path | None = None) -> tuple[list[str], str]:
    """The synthetic set's videos to leave out of set (c), and where they come from.

    In order: ``flags_csv`` (a CSV with a ``query`` or ``FileName`` column, and
    optionally ``flagged``: only rows where it is true count); else the audit's
    ``audit/<name>_flags.csv`` (what ``echoaudit audit`` wrote); else the workspace's
    scores flagged at its calibrated threshold (95th percentile, as ``echoaudit audit``)."""
    import pandas as pd

    path = flags_csv or ws.root / "audit" / f"{name}_flags.csv"
    if path.is_file():
        try:
            table = pd.read_csv(path, dtype=str)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise EchoAuditError(f"cannot read the flags file {path} ({exc})") from None
        col = next((c for c in ("query", "FileName") if c in table), None)
        if col is None:
            raise EchoAuditError(f"flags file {path} needs a query or FileName column (the videos to leave out); it has "
                                 f"{list(table.columns)}")
        keep = (table["flagged"].str.strip().str.lower().isin(("true", "1", "yes")) if "flagged" in table
                else slice(None))
        return sorted(table.loc[keep, col].astype(str).str.strip()), str(path)
    from echoaudit.audit.privacy import flag_videos

    thr = ws.threshold(95.0, n_boot=10)  # the value does not depend on the bootstrap
    scores = ws.synthetic_scores(name)
    flags = flag_videos(scores[["query", "train_video", "train_patient", "score"]], thr.value,
                        queries=ws.synthetic(name).names)
    return sorted(flags.loc[flags["flagged"], "query"].astype(str)), f"workspace scores at the calibrated threshold ({thr.rule})"


def _open_cache(path: Path, expected_vae: str | None, size: int | None, what: str):
    from echoaudit.latents import LatentCache

    cache = LatentCache.load(path, expected_vae=expected_vae)
    if size is not None and int(cache.meta.get("size", size)) != int(size):
        raise EchoAuditError(f"latent cache {path} was encoded at {cache.meta.get('size')} px; {what} uses {size} px: "
                             "give a cache encoded at that size or leave --latents out")
    return cache


def real_videos(dataset, vae, size: int | None, latents: Path | None, default_folder: Path):
    """EFVideos of ``dataset``: from ``latents`` when it holds a cache (checked against the
    VAE and ``size`` when given), else encoded (once, at ``size`` or 112 px) into
    ``latents`` or ``default_folder``."""
    from echoaudit.train.ef import EFVideos, cached_latents

    if latents is not None and (Path(latents) / "cache.json").is_file():
        cache = _open_cache(Path(latents), vae.fingerprint if vae is not None else None, size, "the data")
    else:
        if vae is None:
            raise EchoAuditError(f"no latent cache at {latents}: give --vae to encode the data set into it")
        cache = cached_latents(dataset, vae, latents or default_folder, size=size or 112)
    return EFVideos.from_cache(cache, dataset.table, origin="real")


def synthetic_videos(ws, name: str, out: Path):
    from echoaudit.train.ef import EFVideos, cached_latents

    ds = ws.synthetic(name)
    cache = cached_latents(ds, ws.vae, Path(out) / "latents" / name, size=ws.size)
    return EFVideos.from_cache(cache, ds.table, origin="synthetic")


def run_workspace_utility(ws, name: str, *, out: Path | None = None, seeds: tuple[int, ...] = (0, 1, 2),
                          train=None, latents: Path | None = None, flags: Path | None = None, n_boot: int = 1000):
    """Measure the utility of set ``name`` and write it to ``out`` (default
    ``WS/utility/<name>/``); returns (result, record, files written, the flagged videos
    left out of set (c), where they come from)."""
    from echoaudit.downstream import UtilityConfig, run_utility
    from echoaudit.train.ef import EFTrainConfig
    from echoaudit.utility_view import utility_folder, write_utility

    ws.synthetic(name)  # an unknown set: one clear line before any work
    out = Path(out) if out is not None else utility_folder(ws.root, name)
    flagged, flag_source = workspace_flagged(ws, name, flags)
    real = real_videos(ws.dataset, ws.vae, ws.size, latents, out / "latents" / "real")
    synthetic = synthetic_videos(ws, name, out)
    cfg = UtilityConfig(seeds=tuple(seeds), train=train or EFTrainConfig(), n_boot=n_boot)
    res = run_utility(real, synthetic, flagged, out, cfg)
    record = {"workspace": str(ws.root), "set": name, "flagged_source": flag_source, "sentence": res.sentence,
              "table": res.table.to_dict(orient="records"), "by_ef": res.by_ef.to_dict(orient="records"),
              "ef_agreement": res.agreement, **res.record}
    names = write_utility(out, record, res.table, res.by_ef, res.predictions, res.agreement_points)
    record_utility(ws.root, name, out, sentence=res.sentence, seeds=list(cfg.seeds), epochs=cfg.train.epochs,
                   n_flagged=len(flagged))
    return res, record, names, flagged, flag_source


def record_utility(root: str | Path, name: str, out: Path, **info) -> dict:
    """Record set ``name``'s utility results in the manifest (read from disk now, written
    atomically) and drop it from ``utility_pending``; returns the entry."""
    from echoaudit.fileio import write_json
    from echoaudit.workspace import MANIFEST, load_manifest

    root = Path(root).resolve()
    out = Path(out).resolve()
    try:
        rel = str(out.relative_to(root))
    except ValueError:
        rel = str(out)
    manifest = load_manifest(root)
    entry = {"path": rel, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info}
    manifest.setdefault("utility", {})[name] = entry
    manifest["utility_pending"] = [s for s in manifest.get("utility_pending", []) if s != name]
    write_json(root / MANIFEST, manifest)
    return entry
