"""Fill a workspace: copy the models in, index the training set, score real held-out
videos (for the threshold), store the per-video embeddings, temporal curves and a re-ID
ROC, then generate and score the synthetic sets.

Every score that meets the threshold is computed on clips of one :class:`ClipSpec` (the
synthetic set's frame rate and length): real held-out videos are cut and resampled to it
before they are scored, so the threshold is a percentile of the very statistic a synthetic
video is judged by. The held-out patients are split into a calibration part (sets the
threshold) and a check part (measures its false-flag rate); the manifest records the
split, its seed and the clip spec.

Each query video's first-frame embedding is stored too (``first_frames_<set>.parquet``,
listed under ``scores["first_frames"]``): the published conventions score first frames
only (:mod:`echoaudit.audit.conventions`), and the report sets them beside the
whole-video numbers.

The manifest is written once the real-data part is done: a folder with a manifest is a
usable workspace. Synthetic sets follow one at a time, each recorded in the manifest as
it completes (``pending`` lists those still to come; ``complete_workspace`` makes them,
also after an interruption). An interrupted index build resumes from its chunks.

A generator may be a published EchoNet-Synthetic video UNet folder
(:mod:`echoaudit.published_generator`); it needs a folder of conditioning latent frames
(``conditioning={name: folder}``), copied to ``models/conditioning/<name>`` and recorded
(path, sha256) in the generator's manifest entry. A scheduler found beside the UNet
(``../scheduler/scheduler_config.json``) is copied into the workspace's copy of it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from echoaudit.audit.calibration import calibration_split
from echoaudit.data.clips import ClipSpec
from echoaudit.engine import AuditEngine, EngineConfig, build_training_index, index_vectors
from echoaudit.errors import CheckpointError, EchoAuditError
from echoaudit.fileio import atomic_dir, model_fingerprint, read_json, remove_stale_temps, remove_tree, write_json
# Scoring a set of videos lives in echoaudit.scoring; its public names stay importable from here.
from echoaudit.scoring import (  # noqa: F401
    SetAudit, _reid_roc, _save_parquet, audit_synthetic_set, audit_synthetic_set_chunked, clip_load_kwargs,
    embed_video_frames, embed_video_latents, latent_store_for, set_audit_fingerprint, stored_latents, temporal_sample,
    train_latent_store,
)
from echoaudit.workspace import MANIFEST, Workspace, load_manifest

__all__ = ["BuildConfig", "MANIFEST_VERSION", "SetAudit", "create_workspace", "complete_workspace",
           "add_synthetic_set", "audit_synthetic_set", "embed_video_frames", "generator_fps", "build_clip_spec",
           "clip_load_kwargs", "temporal_sample", "audit_synthetic_set_chunked", "set_audit_fingerprint"]

#: Version 3: held-out videos scored on clips of the synthetic set's spec (``clip``) and
#: split into calibration / check patients (``calibration``). Version 2 workspaces open
#: too; their threshold is calibrated on every held-out video and its rate "not measured".
MANIFEST_VERSION = 3
#: ``scores[FIRST_FRAMES]``: set ("heldout" or a synthetic set's name) -> its first-frame
#: embeddings file. Optional: version-3 workspaces built before it lack the key.
FIRST_FRAMES = "first_frames"

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class BuildConfig:
    n_synthetic: int = 32  # videos per generator
    synthetic_frames: int = 32
    steps: int = 20  # sampler steps
    guidance: float = 1.5
    seed: int = 0
    top: int = 10  # best training videos kept per query video
    temporal_heldout: int = 48  # held-out videos given temporal curves (seeded, spread over patients)
    # Clips every threshold-facing score is computed on: clip_fps frames per second (None:
    # the generators' "fps" from training.json, else 25) and synthetic_frames frames.
    clip_fps: float | None = None
    calibration_fraction: float = 0.5  # share of held-out patients that set the threshold
    engine: EngineConfig = field(default_factory=EngineConfig)
    # Sets whose downstream EF utility the build measures after making them (the demo's; see
    # echoaudit.utility_workspace), with this many seeds and epochs per EF model.
    utility: tuple[str, ...] = ()
    utility_seeds: int = 2
    utility_epochs: int = 20


def generator_fps(folder: str | Path) -> float | None:
    """The frame rate a generator's clips have: ``fps`` of its ``training.json`` (else of
    its ``model_index.json``, the pipeline's config), or None when neither records one (a
    file that is damaged or not a JSON object records none). A published video UNet:
    its sampler's 32 fps."""
    from echoaudit.published_generator import PUBLISHED_FPS, is_published_unet

    if is_published_unet(folder):
        return PUBLISHED_FPS
    for name in ("training.json", "model_index.json"):
        p = Path(folder) / name
        if p.is_file():
            try:
                fps = read_json(p, what=f"generator {name}", expect=dict).get("fps")
            except EchoAuditError:
                continue
            if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0:
                return float(fps)
    return None


def build_clip_spec(cfg: BuildConfig, generators: dict[str, str | Path] | None = None) -> ClipSpec:
    """The clip spec of a build: ``cfg.clip_fps`` if set, else the first generator's fps
    (:func:`generator_fps`), else 25 fps; ``cfg.synthetic_frames`` frames."""
    fps = cfg.clip_fps
    if fps is None:
        found = [f for f in (generator_fps(g) for g in (generators or {}).values()) if f is not None]
        fps = found[0] if found else 25.0
    return ClipSpec(fps=float(fps), frames=int(cfg.synthetic_frames))


def _check_model_sources(vae: Path, reid: Path, generators: dict[str, Path],
                         conditioning: dict[str, Path] | None = None) -> None:
    """The model folders' configs, checked as their loaders will (strict JSON, sizes in
    range: :mod:`echoaudit.models.limits`) before the build copies or builds anything.

    Raises:
        EchoAuditError: a folder without a config; CheckpointError: a config the loader
            would refuse (the message names the file and the key), a published video UNet
            without conditioning frames; DatasetError: conditioning frames that do not load.
    """
    from echoaudit.fileio import check_model_configs
    from echoaudit.models.limits import (
        check_generator_configs,
        check_reid_config,
        check_unet_config,
        check_vae_config,
    )
    from echoaudit.published_generator import is_published_unet, load_conditioning, load_scheduler

    for folder in (vae, reid, *generators.values()):
        if not (folder / "config.json").exists() and not (folder / "model_index.json").exists():
            raise EchoAuditError(f"{folder} is not a model folder (no config.json or model_index.json)")
    for folder, check in ((vae, check_vae_config), (reid, check_reid_config)):
        config = check_model_configs(folder, ("config.json",)).get("config.json")
        if config is not None:
            check(folder / "config.json", config)
    conditioning = conditioning or {}
    extra = sorted(set(conditioning) - set(generators))
    if extra:
        raise EchoAuditError(f"conditioning given for {', '.join(extra)}, which is not a generator of this build")
    for name, folder in generators.items():
        if is_published_unet(folder):
            check_unet_config(folder / "config.json", check_model_configs(folder, ("config.json",))["config.json"])
            load_scheduler(folder)
            if name not in conditioning:
                raise CheckpointError(f"generator {name!r} ({folder}) is a published video UNet: it needs conditioning "
                                      f"frames: pass a folder of C x h x w .pt latents (--conditioning {name}=FOLDER)")
            load_conditioning(conditioning[name])  # DatasetError naming the file
            continue
        if name in conditioning:
            raise CheckpointError(f"generator {name!r} ({folder}) is not a published video UNet; conditioning frames "
                                  "are only for those")
        check_generator_configs(folder, check_model_configs(
            folder, ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json")))


def _copy_model(src: Path, dst: Path) -> str:
    from echoaudit.published_generator import find_scheduler_config, is_published_unet

    with atomic_dir(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        sched = find_scheduler_config(src) if is_published_unet(src) else None
        if sched is not None and sched.parent != src:  # ../scheduler/ beside a published UNet: keep it with it
            shutil.copyfile(sched, Path(tmp) / "scheduler_config.json")
    return model_fingerprint(dst)


def _check_latents_match_vae(lat, train, vae, size: int, n: int = 3, floor: float = 0.9) -> None:
    """The VAE's encoding of the first frame of ``n`` TRAIN videos against their latents'
    first frame: a Pearson correlation below ``floor`` means the latents come from another
    VAE (or another frame size), and the build stops before indexing them."""
    from echoaudit.errors import DatasetError

    for name in train.names[:n]:
        mine = vae.encode(train.load(name, size=size, num_frames=1).frames).numpy()[0].ravel()
        theirs = lat.get(name)[0].ravel()
        r = float(np.corrcoef(mine, theirs)[0, 1])
        if not r >= floor:
            raise DatasetError(f"the latents of {name} in {lat.folder} do not match this VAE: the correlation of its "
                               f"first frame encoded by the VAE with the latent file is {r:.3f} (< {floor}); they "
                               "were made by another VAE or at another frame size")


def _copy_conditioning(src: Path, dst: Path) -> str:
    """Copy a conditioning folder's ``*.pt`` frames; returns their sha256."""
    from echoaudit.published_generator import conditioning_fingerprint

    with atomic_dir(dst) as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for f in sorted(src.glob("*.pt")):
            shutil.copyfile(f, Path(tmp) / f.name)
    return conditioning_fingerprint(dst)


def create_workspace(root: str | Path, *, ray: str | None = None, **kwargs) -> Workspace:
    """Build a workspace (see :func:`_create_workspace` for the arguments). ``ray``: run the
    embedding of the TRAIN videos and the audits of the synthetic sets as Ray Data jobs
    (:mod:`echoaudit.raypath`; ``"auto"``, ``"local"`` or a cluster address), on one
    connection for the whole build; they write the chunks the local path would, so the
    workspace is the same. None: everything here."""
    if ray is None:
        return _create_workspace(root, **kwargs)
    from echoaudit.raypath import ray_cluster

    with ray_cluster(ray):
        return _create_workspace(root, ray=ray, **kwargs)


def _create_workspace(
    root: str | Path,
    *,
    data: str | Path,
    vae: str | Path,
    reid: str | Path,
    generators: dict[str, str | Path] | None = None,
    cfg: BuildConfig = BuildConfig(),
    note: dict | None = None,
    timings: dict[str, float] | None = None,
    progress: Progress | None = None,
    on_missing: str = "error",
    conditioning: dict[str, str | Path] | None = None,
    latents: str | Path | None = None,
    ray: str | None = None,
) -> Workspace:
    """Build a workspace in ``root`` from a data set and model folders: the real-data part
    first (after which the manifest makes it usable), then one synthetic set per generator.

    ``conditioning``: generator name -> folder of conditioning latent frames, for the
    generators that are published video UNets (each needs one).

    ``latents``: a folder in the published layout (``FileList.csv`` + ``Latents/<FileName>.pt``,
    :class:`~echoaudit.published_latents.PublishedLatents`) holding every TRAIN video's
    latents: the index is built from them directly (no decoding, no encoding). They must
    have the VAE's latent shape, and the VAE's encoding of a few TRAIN first frames must
    match them (correlation >= 0.9): latents of another VAE are refused. Held-out and
    synthetic videos are still decoded and encoded (their clips are conformed first).

    ``ray``: see :func:`create_workspace`.

    ``on_missing``: as for ``EchoNetDataset.open``: ``"skip"`` leaves out the listed videos
    that are missing or unusable; the manifest records it (``data.on_missing`` and
    ``data.skipped``, their FileNames) so the workspace reopens its data set the same way.

    The data set and the models' configs are checked before anything is written: a bad
    data set or model folder leaves ``root`` as it was.
    """
    from echoaudit.data.echonet import EchoNetDataset
    from echoaudit.models.reid import load_reid
    from echoaudit.models.vae import FrameVAE

    root = Path(root).resolve()
    generators = dict(generators or {})
    data = Path(data).resolve()
    ds = EchoNetDataset.open(data, on_missing=on_missing)
    train, heldout = ds.split("TRAIN"), ds.split(["VAL", "TEST"])
    if len(train) == 0 or len(heldout) == 0:
        raise EchoAuditError(f"{data} needs TRAIN videos and held-out (VAL/TEST) videos; it has {len(train)} and {len(heldout)}")
    conditioning = {g: Path(c).resolve() for g, c in (conditioning or {}).items()}
    pub_latents = None
    if latents is not None:  # published Latents/ (or their folder): checked before anything is written
        from echoaudit.published_latents import PublishedLatents

        src_vae = FrameVAE.from_pretrained(Path(vae))
        pub_latents = PublishedLatents.open(latents, shape=src_vae.latent_shape(cfg.engine.size))
        pub_latents.embed_video_fn(None, train.names)  # every TRAIN video must be there (DatasetError otherwise)
        _check_latents_match_vae(pub_latents, train, src_vae, cfg.engine.size)
    _check_model_sources(Path(vae), Path(reid), {g: Path(src) for g, src in generators.items()}, conditioning)
    unknown = [u for u in cfg.utility if u not in generators]
    if unknown:
        raise EchoAuditError(f"utility is asked for {', '.join(map(str, unknown))}, which is not a generator of this "
                             f"build ({', '.join(generators) or 'none'})")
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)  # a rebuilt folder is not usable until its new manifest
    t_start = time.time()
    timings = dict(timings or {})  # stages done before this call (the demo's phantom data)

    def report(frac: float, msg: str) -> None:
        if progress is not None:
            progress(min(1.0, frac), msg)

    def stage(name: str, t0: float) -> None:
        timings[name] = round(time.time() - t0, 2)

    # 1. Models (the data set is open).
    t0 = time.time()
    models = {"vae": {"path": "models/vae", "sha256": _copy_model(Path(vae), root / "models/vae"), "kind": "AutoencoderKL"},
              "reid": {"path": "models/reid", "sha256": _copy_model(Path(reid), root / "models/reid"), "kind": "siamese re-ID (latent)"},
              "generators": {}}
    for g, src in generators.items():
        models["generators"][g] = {"path": f"models/generators/{g}", "kind": "latent video diffusion",
                                   "sha256": _copy_model(Path(src), root / "models/generators" / g)}
        if g in conditioning:
            models["generators"][g]["kind"] = "published latent video diffusion (EchoNet-Synthetic)"
            models["generators"][g]["conditioning"] = {
                "path": f"models/conditioning/{g}", "source": str(conditioning[g]),
                "sha256": _copy_conditioning(conditioning[g], root / "models/conditioning" / g)}
    vae_m = FrameVAE.from_pretrained(root / "models/vae")
    reid_m = load_reid(root / "models/reid").eval()
    if pub_latents is not None:
        models["latents"] = {"path": str(Path(latents).resolve()), "n_videos": len(pub_latents),
                             "layout": "published (FileList.csv + Latents/<FileName>.pt)"}
    for name, model in (("vae", vae_m.vae), ("reid", reid_m)):
        models[name]["parameters"] = int(sum(p.numel() for p in model.parameters()))
    for name, folder in (("vae", root / "models/vae"), ("reid", root / "models/reid")):
        models[name]["summary"] = _training_summary(folder)
    for g in generators:
        models["generators"][g]["summary"] = _training_summary(root / "models/generators" / g)
    stage("models", t0)

    # 2. Index of TRAIN frames.
    t0 = time.time()
    ecfg = cfg.engine
    # The frame size is part of it: chunks embedded at another size must not be resumed.
    fingerprint = {"vae": models["vae"]["sha256"], "reid": models["reid"]["sha256"], "data": _data_fingerprint(train),
                   "index_stride": ecfg.index_stride, "size": ecfg.size}

    from echoaudit.data.prefetch import VideoPrefetcher

    if pub_latents is not None:  # the index embeds the given latents: they are part of what it was made from
        fingerprint["latents"] = pub_latents.fingerprint(train.names)
    index = _finished_index(root / "index", fingerprint)  # a build stopped after its index resumes here
    if index is not None:
        emb = index_vectors(index)
        report(0.3, "indexing training frames: reusing the index of the interrupted build")
    elif pub_latents is not None:  # straight from the latents: no decoding, no encoding
        index, emb = build_training_index(
            train, root / "index", embed_video=pub_latents.embed_video_fn(reid_m, train.names,
                                                                          index_stride=ecfg.index_stride),
            fingerprint=fingerprint, index_stride=ecfg.index_stride,
            progress=lambda f, m: report(0.05 + 0.25 * f, f"indexing training frames from latents: {m}"))
    else:
        if ray is not None:  # the chunks on Ray; the local build below then finds them all done
            from echoaudit.raypath import embed_index_chunks

            embed_index_chunks(root / "index", train, data=data, on_missing=on_missing, vae=root / "models/vae",
                               reid=root / "models/reid", fingerprint=fingerprint, index_stride=ecfg.index_stride,
                               size=ecfg.size, address=ray,
                               progress=lambda f, m: report(0.05 + 0.25 * f, f"indexing training frames: {m}"))
        # The VAE latents of those frames are kept (WS/latents/train): a second filter or a
        # rebuilt index with another re-ID embeds them without decoding or encoding again.
        train_lat = train_latent_store(root, train, vae_sha256=models["vae"]["sha256"], engine_config=ecfg)
        with VideoPrefetcher(train, size=ecfg.size, frame_step=ecfg.index_stride) as videos:
            def embed_train(i: int) -> np.ndarray:  # frames 0, s, 2s, ... (s = index_stride)
                lat = stored_latents(train_lat, videos, i, lambda f: vae_m.encode(f).numpy())
                return embed_video_latents(reid_m, lat)

            index, emb = build_training_index(
                train, root / "index", embed_video=embed_train, fingerprint=fingerprint, index_stride=ecfg.index_stride,
                progress=lambda f, m: report(0.05 + 0.25 * f, f"indexing training frames: {m}"))
    engine = AuditEngine(vae_m, reid_m, index, emb, ecfg)
    stage("index", t0)

    # 3. Real held-out videos, on clips like the synthetic ones: calibration and check
    # scores, temporal curves, ROC. The split by patient is fixed here (seed cfg.seed).
    t0 = time.time()
    scores_dir = root / "scores"
    clip = build_clip_spec(cfg, generators)
    held_patients = [str(p) for p in heldout.patients]
    split = (calibration_split(heldout.names, held_patients, seed=cfg.seed, fraction=cfg.calibration_fraction)
             if len(set(held_patients)) >= 2 else None)
    emb_by_video: dict[str, np.ndarray] = {}  # reused for the ROC: no second encoding
    held = audit_synthetic_set(
        engine, heldout, "real held-out", top=cfg.top, clip=clip, frame_embeddings=emb_by_video,
        latents=latent_store_for(root, "heldout", heldout, vae_sha256=models["vae"]["sha256"], engine_config=ecfg,
                                 clip=clip),
        temporal_videos=temporal_sample(heldout, cfg.temporal_heldout, cfg.seed),
        progress=lambda f, m: report(0.3 + 0.2 * f, f"scoring real held-out videos: {m}"))
    tables = {"heldout": _save_parquet(held.scores, scores_dir / "heldout.parquet"),
              FIRST_FRAMES: {"heldout": _save_parquet(held.first_frames, scores_dir / "first_frames_heldout.parquet")}}
    roc = _reid_roc(engine, heldout.split("TEST") if "TEST" in set(heldout.table["Split"]) else heldout,
                    emb_by_video, n_pairs=2000, seed=cfg.seed)
    tables["reid_roc"] = _save_parquet(roc, scores_dir / "reid_roc.parquet")
    stage("heldout", t0)

    # 4. Per-video embeddings of the training set (mean of indexed frames) for the coverage map.
    meta = index.metadata.assign(_row=np.arange(index.ntotal))
    train_emb = []
    for video, rows in meta.groupby("video", sort=False):
        m = emb[rows["_row"].to_numpy()].mean(axis=0)
        train_emb.append({"set": "train", "video": video, "emb": (m / (np.linalg.norm(m) + 1e-8)).tolist()})
    # Per-set tables are separate files listed in the manifest: adding a set later writes its
    # own files, then the manifest, so a reader never sees a set the manifest does not list.
    tables["temporal"] = [_save_parquet(held.temporal, scores_dir / "temporal_heldout.parquet")]
    tables["video_embeddings"] = [_save_parquet(pd.concat([pd.DataFrame(train_emb), held.embeddings], ignore_index=True),
                                                scores_dir / "embeddings_real.parquet")]
    tables = {k: [_rel(Path(x), root) for x in v] if isinstance(v, list)
              else {s: _rel(Path(x), root) for s, x in v.items()} if isinstance(v, dict) else _rel(Path(v), root)
              for k, v in tables.items()}

    # 5. The manifest: from here the workspace is usable. The synthetic sets follow, one at a
    # time (each adds itself to the manifest); ``pending`` lists those still to be made.
    manifest = {
        "version": MANIFEST_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {"path": _rel(data, root), "n_videos": len(ds), "n_train": len(train), "n_heldout": len(heldout),
                 "on_missing": on_missing, "skipped": sorted(ds.skipped["FileName"])},
        "models": models,
        "engine": asdict(ecfg),
        "index": {"path": "index", "fingerprint": fingerprint, "ntotal": index.ntotal, "kind": index.kind},
        "synthetic": {},
        "pending": list(generators),
        "utility_pending": list(cfg.utility),
        "scores": tables,
        "clip": clip.to_dict(),
        # None when the held-out set has a single patient: nothing to check the threshold on.
        "calibration": None if split is None else split.to_dict(),
        "build": {**asdict(cfg), "engine": asdict(ecfg), "seconds": round(time.time() - t_start, 1), "timings": timings},
        "note": note or {},
    }
    write_json(root / MANIFEST, manifest)
    report(0.5, "real data indexed and calibrated: the dashboard is usable; synthetic sets follow")
    return complete_workspace(Workspace(root), progress=lambda f, m: report(0.5 + 0.5 * f, m), ray=ray)


def _finished_index(folder: Path, fingerprint: dict):
    """The index in ``folder`` when it is complete and was built from exactly
    ``fingerprint`` with the default config (what ``build_training_index`` would make
    again), else None."""
    from echoaudit.errors import IndexMismatchError
    from echoaudit.index import EmbeddingIndex, IndexConfig, _normalize_fingerprint

    if (folder / "partial").exists() or not (folder / "index.json").is_file():
        return None
    try:
        index = EmbeddingIndex.load(folder, expected_fingerprint=fingerprint)
    except (EchoAuditError, IndexMismatchError, OSError):
        return None  # damaged or of other inputs: build it again
    if index.fingerprint != _normalize_fingerprint(fingerprint) or index.config != IndexConfig():
        return None
    return index


def _finished_set(folder: Path, generator: Path, cfg: "BuildConfig", conditioning_sha256: str | None = None) -> bool:
    """True when ``folder`` holds a complete synthetic set (FileList.csv and
    generator.json) that ``generator`` made with ``cfg``'s settings (a damaged
    generator.json: not complete, made again)."""
    from echoaudit.generate import GENERATOR_JSON

    try:
        rec = read_json(folder / GENERATOR_JSON, what="synthetic set record", expect=dict)
    except EchoAuditError:
        return False
    want = {"checkpoint_sha256": model_fingerprint(generator), "seed": cfg.seed, "n": cfg.n_synthetic,
            "steps": cfg.steps, "guidance": float(cfg.guidance), "num_frames": cfg.synthetic_frames,
            "ef": "drawn from the training EFs"}
    if conditioning_sha256:
        want["conditioning_sha256"] = conditioning_sha256
    return (folder / "FileList.csv").is_file() and all(rec.get(k) == v for k, v in want.items())


def complete_workspace(ws: Workspace, *, progress: Progress | None = None, ray: str | None = None) -> Workspace:
    """Generate and audit each synthetic set still pending in ``ws`` (the demo's generators),
    recording each in the manifest as soon as it is done. Returns the reopened workspace.
    ``ray``: audit the sets on Ray (see :func:`create_workspace`)."""
    from echoaudit.generate import generate_dataset

    pending = list(ws.manifest.get("pending", []))
    b = ws.manifest["build"]  # the BuildConfig it was started with (engine: the workspace's own)
    cfg = BuildConfig(**{k: v for k, v in b.items() if k in BuildConfig.__dataclass_fields__ and k != "engine"})
    for gi, g in enumerate(pending):
        t0 = time.time()
        lo, span = gi / len(pending), 1.0 / len(pending)

        def report(f: float, msg: str) -> None:
            if progress is not None:
                progress(min(1.0, lo + span * f), msg)

        out = ws.root / "synthetic" / g
        cond = ws.manifest["models"]["generators"].get(g, {}).get("conditioning")  # published UNets only
        cond_path = ws.path(cond["path"]) if cond else None
        if _finished_set(out, ws.generator_path(g), cfg, cond["sha256"] if cond else None):  # generated before an interruption: audit it
            report(0.7, f"generating with {g}: made before the interruption")
        else:
            if out.exists():  # a set left half-written by an interrupted build
                remove_tree(out)
            # generate_dataset keeps its finished batches beside ``out`` and resumes from them
            generate_dataset(ws.generator_path(g), ws.vae, out, n=cfg.n_synthetic, seed=cfg.seed, steps=cfg.steps,
                             guidance=cfg.guidance, num_frames=cfg.synthetic_frames, conditioning=cond_path,
                             progress=lambda f, m: report(0.7 * f, f"generating with {g}: {m}"))
        # ws keeps its loaded models and index; add_synthetic_set rewrites the manifest from disk.
        add_synthetic_set(ws, g, out, info={"generator": g, "n": cfg.n_synthetic, "seed": cfg.seed, "steps": cfg.steps},
                          seconds=time.time() - t0, progress=lambda f, m: report(0.7 + 0.3 * f, f"auditing {g}: {m}"),
                          ray=ray)
    utility = [u for u in load_manifest(ws.root).get("utility_pending", []) if u in Workspace(ws.root).synthetic_names]
    if utility:
        from echoaudit.train.ef import EFTrainConfig
        from echoaudit.utility_workspace import run_workspace_utility

        ws = Workspace(ws.root)
        for u in utility:
            if progress is not None:
                progress(1.0, f"EF utility of {u}: training EF models on real, synthetic and filtered sets "
                              f"({cfg.utility_seeds} seeds each; the dashboard is usable meanwhile)")
            # clips no longer than the synthetic videos (32 frames at 25 fps, EchoNet-Dynamic's, at most)
            run_workspace_utility(ws, u, seeds=tuple(range(cfg.utility_seeds)),
                                  train=EFTrainConfig(epochs=cfg.utility_epochs,
                                                      clip_frames=min(32, int(cfg.synthetic_frames))))
    if progress is not None:
        progress(1.0, "workspace ready")
    return Workspace(ws.root)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _data_fingerprint(dataset) -> str:
    import hashlib

    cols = [c for c in ("FileName", "PatientID", "Split", "EF") if c in dataset.table]
    return hashlib.sha256(dataset.table[cols].to_csv(index=False).encode()).hexdigest()


def _training_summary(folder: Path) -> str:
    """One line from a model folder's metrics.json / training.json, if it has one (files
    that are damaged or not JSON objects are passed over)."""
    for name in ("metrics.json", "training.json", "model_index.json"):
        p = folder / name
        if p.exists():
            try:
                d = read_json(p, what=f"model notes {name}", expect=dict)
            except EchoAuditError:
                continue
            summary = d.get("summary")
            if isinstance(summary, str) and summary:
                return summary
            return ", ".join(f"{k}: {v}" for k, v in d.items()
                             if isinstance(v, (int, float, str)) and k != "_class_name")[:300]
    return ""


def add_synthetic_set(ws: Workspace, name: str, folder: str | Path, *, info: dict | None = None,
                      seconds: float | None = None, progress: Progress | None = None,
                      chunk: int = 256, ray: str | None = None) -> pd.DataFrame:
    """Score an EchoNet-format synthetic folder against the workspace and record it in the
    manifest as set ``name`` (its scores, temporal curves and embeddings are files of its
    own; the manifest is written last). ``info`` describes where the set came from
    (default: an external folder). Replaces an earlier set of the same name: the new
    files are written beside the old ones and the manifest switches in one write, so a
    run stopped at any point leaves the old set or the new one, whole. Its videos
    are scored on the workspace's clip spec (``manifest["clip"]``), as the held-out
    videos the threshold came from were; a version-2 workspace (none) scores them as stored.

    The videos are scored ``chunk`` at a time (:func:`audit_synthetic_set_chunked`), each
    finished chunk kept under ``scores/partial/<name>/``: a run stopped midway, called
    again with the same set, resumes from its chunks (chunks made from other models,
    settings or another listing of the set are discarded). That folder is removed once
    the set's files and the manifest are written.

    ``ray``: score the chunks as a Ray Data job (:func:`echoaudit.raypath.audit_set_chunks`;
    ``"auto"``, ``"local"`` or a cluster address); the set's tables are then joined from
    them as a resumed local run would: the same files either way."""
    from echoaudit.data.echonet import EchoNetDataset

    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise EchoAuditError(f"set name must be letters, digits, '-' or '_'; got {name!r}")
    if name in ("train", "heldout", "real"):
        raise EchoAuditError(f"{name!r} is reserved for the workspace's real videos; choose another set name")
    syn = EchoNetDataset.open(folder)
    if len(syn) == 0:
        raise EchoAuditError(f"{folder} lists no videos")
    cfg = ws.manifest.get("build", {})
    top, clip = int(cfg.get("top", 10)), ws.clip_spec
    # Scored in chunks kept under scores/partial/<name>/: a run stopped midway resumes there.
    partial = ws.root / "scores" / "partial" / name
    fingerprint = set_audit_fingerprint(ws.engine, syn, name, index_fingerprint=ws.manifest["index"]["fingerprint"],
                                        top=top, clip=clip, temporal_videos=None)
    if ray is not None:
        from echoaudit.raypath import audit_set_chunks

        audit_set_chunks(ws.root, syn, name, chunk_dir=partial, fingerprint=fingerprint, chunk=chunk, top=top,
                         clip=clip, address=ray, progress=progress)
    latents = latent_store_for(ws.root, f"set_{name}", syn, vae_sha256=ws.manifest["models"]["vae"]["sha256"],
                               engine_config=ws.engine.config, clip=clip)
    audit = audit_synthetic_set_chunked(ws.engine, syn, name, chunk_dir=partial, fingerprint=fingerprint,
                                        chunk=chunk, top=top, progress=progress, clip=clip, latents=latents)
    root = ws.root
    plain = {"scores": f"scores/synthetic_{name}.parquet", "temporal": f"scores/temporal_{name}.parquet",
             "embeddings": f"scores/embeddings_{name}.parquet", "first_frames": f"scores/first_frames_{name}.parquet"}
    # A set that replaces one of the same name gets files of other names (".b": no set
    # name has a dot), and the manifest switches to them in one write: a run stopped
    # before that keeps the old set whole, never the old manifest entry over new scores.
    alt = {k: v.replace(".parquet", ".b.parquet") for k, v in plain.items()}
    files = alt if load_manifest(root)["scores"].get(f"synthetic_{name}") == plain["scores"] else plain
    others = {k: (plain[k], alt[k]) for k in plain}
    _save_parquet(audit.scores, root / files["scores"])
    _save_parquet(audit.temporal, root / files["temporal"])
    _save_parquet(audit.embeddings, root / files["embeddings"])
    _save_parquet(audit.first_frames, root / files["first_frames"])

    manifest = load_manifest(root)  # the file as it is now, not as ws was opened
    tables = manifest["scores"]
    tables[f"synthetic_{name}"] = files["scores"]
    for key, kind in (("temporal", "temporal"), ("video_embeddings", "embeddings")):
        parts = tables[key] if isinstance(tables[key], list) else [tables[key]]
        tables[key] = [p for p in parts if p not in others[kind]] + [files[kind]]
    tables.setdefault(FIRST_FRAMES, {})[name] = files["first_frames"]
    folder = Path(folder).resolve()
    manifest.setdefault("synthetic", {})[name] = {"path": _rel(folder, root), **(info or {"generator": "external"}),
                                                  "n": len(syn)}
    manifest["pending"] = [g for g in manifest.get("pending", []) if g != name]
    if seconds is not None:
        manifest.setdefault("build", {}).setdefault("timings", {})[f"synthetic_{name}"] = round(seconds, 2)
    write_json(root / MANIFEST, manifest)
    for kind, names in others.items():  # the replaced set's files, no longer listed
        for rel in names:
            if rel != files[kind]:
                (root / rel).unlink(missing_ok=True)
    remove_tree(partial)  # the set is stored: its chunks are of no further use
    remove_stale_temps(partial.parent)  # what a run killed while removing chunks left there
    with contextlib.suppress(OSError):  # scores/partial/ itself, once no other set's chunks are in it
        partial.parent.rmdir()
    return audit.scores
