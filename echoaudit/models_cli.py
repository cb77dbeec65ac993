"""``echoaudit models inspect --vae DIR | --reid DIR | --generator DIR``: what a model
folder is (the project's format or the published EchoNet-Synthetic one), its parameter
count, config and fingerprint, or why it cannot be loaded (exit code 2).

It loads the model exactly as the audit would (the same bounded, strict loaders), so a
folder that inspects cleanly is one ``--vae`` / ``--reid`` / ``--generator`` accept.

``register(sub)`` adds the ``models`` command to the ``echoaudit`` command's subparsers
(see ``echoaudit/cli.py``); until it is wired there, ``python -m echoaudit.models_cli
models inspect --reid DIR`` runs it with the same messages and exit codes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from echoaudit.errors import CheckpointError, EchoAuditError

__all__ = ["register", "main", "inspect_model", "cmd_models_inspect", "KINDS"]

KINDS = ("vae", "reid", "generator")
_LABEL = {"vae": "VAE", "reid": "re-ID model", "generator": "generator"}


def _plain(cfg) -> dict:
    """A diffusers config (FrozenDict) as a JSON-ready dict without its private keys."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(cfg).items() if not str(k).startswith("_")}


def _n_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _inspect_reid(folder: Path) -> dict:
    from echoaudit.models.published import describe, is_published_reid
    from echoaudit.models.reid import load_reid, reid_fingerprint

    if is_published_reid(folder):
        return describe(folder)
    model = load_reid(folder)
    return {"kind": "re-ID", "format": "project (ReIDNet: config.json + safetensors)",
            "parameters": _n_params(model), "config": _plain(model.config), "fingerprint": reid_fingerprint(folder)}


def _inspect_vae(folder: Path) -> dict:
    from echoaudit.models.vae import FrameVAE

    vae = FrameVAE.from_pretrained(folder)
    rgb = int(vae.vae.config.in_channels) == 3
    fmt = ("published (diffusers AutoencoderKL on RGB frames, EchoNet-Synthetic's layout)" if rgb
           else "project (diffusers AutoencoderKL on gray frames)")
    return {"kind": "VAE", "format": fmt, "parameters": _n_params(vae.vae), "latent_shape": list(vae.latent_shape(112)),
            "config": _plain(vae.vae.config), "fingerprint": vae.fingerprint}


def _inspect_generator(folder: Path) -> dict:
    from echoaudit.fileio import model_fingerprint

    if (folder / "model_index.json").is_file():
        from echoaudit.models.diffusion import EchoVideoPipeline

        pipe = EchoVideoPipeline.from_folder(folder)
        return {"kind": "generator", "format": "project (EchoVideoPipeline: model_index.json, unet/, scheduler/)",
                "parameters": _n_params(pipe.unet),
                "config": {"pipeline": _plain(pipe.config), "unet": _plain(pipe.unet.config),
                           "scheduler": type(pipe.scheduler).__name__},
                "fingerprint": model_fingerprint(folder)}
    from echoaudit.published_generator import load_published_unet

    unet = load_published_unet(folder)  # the same strict loader as generation (one copy)
    c_in, c_out = int(unet.config.in_channels), int(unet.config.out_channels)
    note = (f"in_channels {c_in} = noisy latents + conditioning-frame latents ({c_out} each)" if c_in == 2 * c_out
            else f"in_channels {c_in}, out_channels {c_out}")
    return {"kind": "generator", "format": "published (diffusers UNetSpatioTemporalConditionModel folder, "
                                           "EchoNet-Synthetic's video model)",
            "parameters": _n_params(unet), "note": note, "config": _plain(unet.config),
            "fingerprint": model_fingerprint(folder)}


def _refuse_other_kind(kind: str, folder: Path) -> None:
    """A folder whose config.json names another kind of model, said in those words
    (instead of the loader's list of mismatched weights)."""
    from echoaudit.fileio import check_model_configs

    cfg = check_model_configs(folder, ("config.json",)).get("config.json") or {}
    if "siamese_architecture" in cfg and kind != "reid":
        raise CheckpointError(f"{folder} is a published re-ID folder (its config.json names a siamese_architecture), "
                              f"not a {_LABEL[kind]}; inspect it with --reid")
    cls = cfg.get("_class_name")
    wanted = {"vae": "AutoencoderKL", "reid": "ReIDNet"}.get(kind)
    if wanted and isinstance(cls, str) and cls != wanted:
        raise CheckpointError(f"{folder} holds a {cls} (its config.json's _class_name), not a {_LABEL[kind]} "
                              f"({wanted})")


def inspect_model(kind: str, folder: str | Path) -> dict:
    """Load ``folder`` as a model of ``kind`` ("vae", "reid", "generator") and describe it:
    kind, format, parameters, config, fingerprint (and, for some, weights / notes).

    Raises:
        EchoAuditError: why it cannot be loaded (every other exception a loader lets
            through is turned into a CheckpointError naming the folder).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{_LABEL[kind]} folder {folder} does not exist or is not a folder")
    inspect = {"vae": _inspect_vae, "reid": _inspect_reid, "generator": _inspect_generator}[kind]
    try:
        _refuse_other_kind(kind, folder)
        info = inspect(folder)
    except EchoAuditError:
        raise
    except Exception as exc:  # a loader's unexpected type must still read as "cannot load"
        raise CheckpointError(f"cannot load the {_LABEL[kind]} in {folder} ({type(exc).__name__}: {str(exc)[:400]})") from None
    return {"folder": str(folder.resolve()), **info}


def _format(info: dict) -> str:
    lines = [f"{info['kind']} {info['folder']}", f"  format:      {info['format']}"]
    if "weights" in info:
        lines.append(f"  weights:     {info['weights']} ({info['weights_bytes'] / 2**20:.1f} MiB)")
    lines.append(f"  parameters:  {info['parameters']:,}")
    if "latent_shape" in info:
        lines.append(f"  latents:     {' x '.join(map(str, info['latent_shape']))} per 112x112 frame")
    if "note" in info:
        lines.append(f"  note:        {info['note']}")
    lines.append(f"  fingerprint: {info['fingerprint']}")
    lines.append(f"  config:      {json.dumps(info['config'], sort_keys=True, default=str)}")
    return "\n".join(lines)


def cmd_models_inspect(args) -> None:
    kind = next(k for k in KINDS if getattr(args, k, None) is not None)
    info = inspect_model(kind, getattr(args, kind))
    print(json.dumps(info, indent=2, sort_keys=True, default=str) if args.json else _format(info))


def register(sub) -> None:
    """Add ``models inspect`` to ``sub`` (the ``add_subparsers()`` object of ``echoaudit``)."""
    mp = sub.add_parser("models", help="inspect model folders (the project's or the published formats)")
    ms = mp.add_subparsers(dest="action", required=True)
    mi = ms.add_parser("inspect", help="format, parameter count, config and fingerprint of a model folder, or why it "
                                       "cannot be loaded (exit code 2)")
    which = mi.add_mutually_exclusive_group(required=True)
    which.add_argument("--vae", type=Path, help="a diffusers AutoencoderKL folder")
    which.add_argument("--reid", type=Path, help="a re-ID folder: the project's (config.json + safetensors) or the "
                                                 "published one (config.json + <name>_best_network.pth)")
    which.add_argument("--generator", type=Path, help="the project's pipeline folder (model_index.json) or a published "
                                                      "UNetSpatioTemporalConditionModel folder")
    mi.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    mi.set_defaults(func=cmd_models_inspect)


def main(argv: list[str] | None = None) -> int:
    """Run ``models inspect`` through the ``echoaudit`` command (same errors, exit code 2)."""
    from echoaudit.cli import main as echoaudit_main

    return echoaudit_main(argv)


if __name__ == "__main__":
    sys.exit(main())
