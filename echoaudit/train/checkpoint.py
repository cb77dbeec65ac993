"""Trainer state on disk without pickle: optimizer tensors in safetensors, the rest JSON.

A run folder holds ``latest/`` (resume point: model + ``trainer_state.safetensors`` +
``trainer_state.json``) and ``best/`` (the model with the best validation figure), as
nanoGPT keeps a checkpoint record apart from the flags that started the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from echoaudit.errors import CheckpointError
from echoaudit.fileio import atomic_path, write_json

__all__ = ["save_trainer_state", "load_trainer_state"]


def save_trainer_state(folder: str | Path, optimizer: torch.optim.Optimizer, record: dict, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write the optimizer state and a JSON ``record`` (step, best metric, config...) into ``folder``."""
    folder = Path(folder)
    sd = optimizer.state_dict()
    tensors = {}
    scalars = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            key = f"opt.{idx}.{name}"
            if torch.is_tensor(val):
                tensors[key] = val.detach().contiguous().cpu()
            else:
                scalars[key] = val
    for name, val in (extra or {}).items():
        tensors[f"extra.{name}"] = val.detach().contiguous().cpu()
    with atomic_path(folder / "trainer_state.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_json(folder / "trainer_state.json", {"record": record, "param_groups": sd["param_groups"], "scalars": scalars})


def load_trainer_state(folder: str | Path, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore ``optimizer`` (if given) from ``folder``; return (record, extra tensors)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "trainer_state.json").read_text())
        tensors = load_file(str(folder / "trainer_state.safetensors"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot resume from {folder}: trainer state missing or corrupt ({exc})") from exc
    if optimizer is not None:
        state: dict[int, dict] = {}
        for key, val in tensors.items():
            if key.startswith("opt."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = val
        for key, val in meta["scalars"].items():
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = val
        try:
            optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot resume from {folder}: optimizer state does not match the model ({exc})") from exc
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return meta["record"], extra
