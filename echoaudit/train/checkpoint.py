"""Trainer state on disk without pickle: optimizer tensors in safetensors, the rest JSON.

A run folder holds ``latest/`` (resume point: model + ``trainer_state.safetensors`` +
``trainer_state.json``) and ``best/`` (the model with the best validation figure), as
nanoGPT keeps a checkpoint record apart from the flags that started the run.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from echoaudit.errors import CheckpointError
from echoaudit.fileio import atomic_path, read_json, write_json

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
    """Restore ``optimizer`` (if given) from ``folder``; return (record, extra tensors).

    Raises:
        CheckpointError: ``trainer_state.json`` / ``.safetensors`` missing or corrupt (not
            UTF-8, not JSON, not an object, keys of the wrong type, tensor names that are
            not ``opt.<index>.<name>``), or an optimizer state that does not fit the model.
    """
    folder = Path(folder)
    try:
        meta = read_json(folder / "trainer_state.json", what="trainer state", expect=dict, error=CheckpointError)
        tensors = load_file(str(folder / "trainer_state.safetensors"))
    except (OSError, ValueError, CheckpointError) as exc:
        raise CheckpointError(f"cannot resume from {folder}: trainer state missing or corrupt ({exc})") from exc
    _check_meta(folder, meta)
    if optimizer is not None:
        state: dict[int, dict] = {}
        try:
            for key, val in [(k, v) for k, v in tensors.items() if k.startswith("opt.")] + list(meta["scalars"].items()):
                _, idx, name = key.split(".", 2)
                if name in state.setdefault(int(idx), {}):  # a scalar over a tensor (exp_avg = 3) fails at the step
                    raise CheckpointError(f"cannot resume from {folder}: trainer state corrupt ({key} is saved both "
                                          "as a tensor and as a scalar)")
                state[int(idx)][name] = val
        except ValueError:
            raise CheckpointError(f"cannot resume from {folder}: trainer state corrupt (an optimizer entry named "
                                  f"{str(key)[:80]!r}, not opt.<index>.<name>)") from None
        _check_groups(folder, meta, optimizer)
        keys = [set(g) for g in optimizer.param_groups]
        try:
            optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"cannot resume from {folder}: optimizer state does not match the model ({exc})") from exc
        # torch takes the saved groups whole (filling in only its newer flags): a saved group
        # without betas would fail at the first step. (The optimizer is unusable after this error.)
        for i, (before, group) in enumerate(zip(keys, optimizer.param_groups)):
            if before - set(group):
                raise CheckpointError(f"cannot resume from {folder}: trainer state corrupt (param_groups[{i}] lacks "
                                      f"{', '.join(sorted(before - set(group)))})")
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return meta["record"], extra


def _check_meta(folder: Path, meta: dict) -> None:
    """``trainer_state.json`` holds record (object), param_groups (list of objects) and
    scalars (object); anything else is a CheckpointError naming the key."""
    wanted = {"record": (dict, "an object"), "param_groups": (list, "a list of objects"), "scalars": (dict, "an object")}
    for key, (kind, text) in wanted.items():
        value = meta.get(key)
        ok = isinstance(value, kind) and (key != "param_groups" or all(isinstance(g, dict) for g in value))
        if not ok:
            raise CheckpointError(f"cannot resume from {folder}: trainer state corrupt ({key} must be {text}; "
                                  f"got {str(value)[:80]})")
    # The record's keys the trainers share, when present (each trainer has its own others).
    shared = {"step": _whole, "epoch": _whole, "ema_step": _whole, "bad_epochs": _whole, "seconds": _number,
              "history": lambda v: isinstance(v, list), "config": lambda v: isinstance(v, dict)}
    for key, ok in shared.items():
        if key in meta["record"] and not ok(meta["record"][key]):
            raise CheckpointError(f"cannot resume from {folder}: trainer state corrupt (record {key} is "
                                  f"{repr(meta['record'][key])[:80]}, of the wrong type)")


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_groups(folder: Path, meta: dict, optimizer: torch.optim.Optimizer) -> None:
    """Saved hyperparameters of the kinds the optimizer has (torch copies them in as they
    are: an lr that is a string would fail at the first step, far from this file), and
    scalar state entries that are numbers."""
    saved, now = meta["param_groups"], optimizer.param_groups
    if len(saved) != len(now):
        raise CheckpointError(f"cannot resume from {folder}: optimizer state does not match the model "
                              f"({len(saved)} parameter groups saved, {len(now)} now)")
    for i, (g, cur) in enumerate(zip(saved, now)):
        if not isinstance(g.get("params"), list) or not all(_whole(p) for p in g["params"]):
            raise CheckpointError(f"cannot resume from {folder}: trainer state corrupt (param_groups[{i}].params "
                                  f"must be a list of parameter numbers)")
        for key, value in g.items():
            if key != "params" and key in cur and not _same_kind(value, cur[key]):
                raise CheckpointError(f"cannot resume from {folder}: trainer state corrupt (param_groups[{i}].{key} "
                                      f"is {repr(value)[:80]}; the optimizer's is {cur[key]!r})")
            lo, hi = _RANGES.get(key, (-math.inf, math.inf))
            if key in _RANGES and key in cur and not all(lo <= v < hi for v in (value if isinstance(value, list) else [value])):
                raise CheckpointError(f"cannot resume from {folder}: trainer state corrupt (param_groups[{i}].{key} "
                                      f"is {str(value)[:80]}; torch's optimizers take [{lo}, {hi}))")
    for key, value in meta["scalars"].items():
        if not (value is None or isinstance(value, (bool, int, float))):
            raise CheckpointError(f"cannot resume from {folder}: trainer state corrupt (scalar {str(key)[:80]!r} is "
                                  f"{repr(value)[:80]}, not a number)")


# The ranges torch's optimizers check when built (they take a loaded state as it is): a
# beta of 2 makes Adam's bias correction complex at the first step.
_RANGES = {"lr": (0.0, math.inf), "eps": (0.0, math.inf), "weight_decay": (0.0, math.inf), "betas": (0.0, 1.0),
           "momentum": (0.0, math.inf)}


def _same_kind(saved, current) -> bool:
    if current is None:
        return saved is None or isinstance(saved, bool)  # e.g. foreach / fused: None or a flag
    if saved is None:
        return False
    if isinstance(current, bool):
        return isinstance(saved, bool)
    if isinstance(current, (int, float)):
        return _number(saved)
    if isinstance(current, (list, tuple)):
        return (isinstance(saved, list) and len(saved) == len(current)
                and all(_same_kind(s, c) for s, c in zip(saved, current)))
    if isinstance(current, torch.Tensor):  # a tensor lr: saved as a number
        return _number(saved)
    return isinstance(saved, type(current))


def cosine_lr(epoch: int, lr: float, epochs: int) -> float:
    """The epoch trainers' schedule: cosine from ``lr`` down to a tenth of it over ``epochs``."""
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs))))


def save_run(model, folder: str | Path, opt: torch.optim.Optimizer | None = None, record: dict | None = None) -> None:
    """Write ``model`` (safetensors + config) to ``folder`` atomically, with the trainer state
    (optimizer + ``record``) when ``opt`` is given: ``best/`` has none, ``latest/`` has it."""
    from echoaudit.fileio import atomic_dir

    with atomic_dir(Path(folder)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if opt is not None:
            save_trainer_state(tmp, opt, record)


def close_epoch(model, record: dict, *, improved: bool, patience: int, best_dir: str | Path, latest: str | Path,
                opt: torch.optim.Optimizer, metrics_path: str | Path) -> None:
    """The end of an epoch trainer's epoch, after ``record``'s best-metric keys are updated by
    the caller when ``improved``: the best run is saved (and the bad-epoch count reset) on
    improvement, else one more bad epoch and ``stopped_early`` once ``patience`` is reached;
    then ``latest/`` with the trainer state and ``metrics.json``, each atomically."""
    if improved:
        record["bad_epochs"] = 0
        save_run(model, best_dir)
    else:
        record["bad_epochs"] += 1
        record["stopped_early"] = record["bad_epochs"] >= patience
    save_run(model, latest, opt, record)
    write_json(metrics_path, record)
