"""Where the downstream-utility results of a workspace live, and how they are read back.

``echoaudit eval utility --workspace WS --set NAME`` writes into ``WS/utility/NAME/``
(:func:`utility_folder`; ``--out`` puts them elsewhere):

- ``utility.json``: the whole record (sentence, table, errors by EF bin, EF agreement,
  runs, settings);
- ``utility.csv``: the comparison table, one row per training set
  (:func:`~echoaudit.audit.utility.utility_table`);
- ``utility_by_ef.csv``: errors by EF bin, one row per (training set, bin);
- ``utility_predictions.csv``: every TEST prediction of every run;
- ``utility_ef_agreement.csv``: EF asked of the generator vs EF the real-trained model
  measures, one row per synthetic video (when there were enough of them).

``echoaudit eval ef-agreement`` writes ``ef_agreement.json`` and ``ef_agreement.csv``
into the same folder. :func:`utility_results` reads them all back for the Utility page
and the report; no Streamlit here.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import pandas as pd

from echoaudit.errors import ConfigError, EchoAuditError

__all__ = ["FILES", "utility_folder", "utility_command", "finite", "write_utility", "utility_results",
           "display_table"]

FILES = {"record": "utility.json", "table": "utility.csv", "by_ef": "utility_by_ef.csv",
         "predictions": "utility_predictions.csv", "agreement_points": "utility_ef_agreement.csv",
         "agreement": "ef_agreement.json", "agreement_csv": "ef_agreement.csv"}

_TABLE_NEEDS = ("arm", "label", "n_train", "seeds", "mae", "mae_low", "mae_high", "rmse", "rmse_low", "rmse_high",
                "r2", "r2_low", "r2_high", "mae_vs_reference", "mae_vs_reference_low", "mae_vs_reference_high")
_BY_EF_NEEDS = ("arm", "group", "n_videos", "mae", "mae_low", "mae_high")
_POINTS_NEEDS = ("FileName", "EF_requested", "EF_predicted")


def _check_name(set_name: str) -> str:
    name = str(set_name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise EchoAuditError(f"synthetic set name {set_name!r} cannot name a results folder")
    return name


def utility_folder(ws_root: str | Path, set_name: str) -> Path:
    """``WS/utility/<set>``: the default ``--out`` of ``eval utility`` and ``eval ef-agreement``."""
    return Path(ws_root) / "utility" / _check_name(set_name)


def utility_command(ws_root: str | Path, set_name: str) -> str:
    """The command that computes the results :func:`utility_results` reads."""
    return f"echoaudit eval utility --workspace {shlex.quote(str(ws_root))} --set {shlex.quote(str(set_name))}"


def finite(obj):
    """NaN / inf -> None, recursively (the project's JSON reader refuses them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return finite(obj.item())
    return obj


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    from echoaudit.fileio import atomic_path

    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def write_utility(out: str | Path, record: dict, table: pd.DataFrame, by_ef: pd.DataFrame,
                  predictions: pd.DataFrame, agreement_points: pd.DataFrame | None = None) -> list[str]:
    """Write the files of ``eval utility`` into ``out`` (each atomically; the JSON last, so
    a reader that finds it finds the tables it names). Returns the names written."""
    from echoaudit.fileio import write_json

    out = Path(out)
    names = []
    for key, df in (("table", table), ("by_ef", by_ef), ("predictions", predictions),
                    ("agreement_points", agreement_points)):
        if df is not None:
            _write_csv(out / FILES[key], df)
            names.append(FILES[key])
    write_json(out / FILES["record"], finite(record))
    return [FILES["record"]] + names


def _read_csv(path: Path, needs: tuple[str, ...], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise EchoAuditError(f"{what} {str(path)!r} is missing (the results there are incomplete): run the "
                             "command again")
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise EchoAuditError(f"cannot read {what} {str(path)!r} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    missing = [c for c in needs if c not in df.columns]
    if missing:
        raise EchoAuditError(f"{what} {str(path)!r} lacks the column(s) {missing}; it has {list(df.columns)}")
    for c in needs:
        if c not in ("arm", "label", "group", "FileName") and not pd.api.types.is_numeric_dtype(df[c]) \
                and df[c].notna().any():
            raise EchoAuditError(f"{what} {str(path)!r}: column {c!r} holds non-numbers, e.g. "
                                 f"{df[c].dropna().astype(str).iloc[0]!r}")
    return df


def _estimate(d, what: str) -> dict:
    if not isinstance(d, dict) or "value" not in d:
        raise EchoAuditError(f"{what} is not an estimate (value, low, high)")
    out = {}
    for k in ("value", "low", "high"):
        v = d.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise EchoAuditError(f"{what}: {k} is {v!r}, not a number")
        out[k] = float("nan") if v is None else float(v)
    out["rule"] = str(d.get("rule", ""))
    return out


def _agreement(d, what: str) -> dict:
    if not isinstance(d, dict):
        raise EchoAuditError(f"{what} is not an object")
    out = {k: _estimate(d.get(k), f"{what}, {k}") for k in ("mae", "bias", "pearson_r")}
    n = d.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise EchoAuditError(f"{what}: n is {n!r}, not a count of videos")
    out["n"] = n
    out["sentence"] = str(d.get("sentence", ""))
    out["model"] = d.get("model")
    return out


def utility_results(ws_root: str | Path, set_name: str, folder: str | Path | None = None) -> dict | None:
    """The utility results of one synthetic set, or None when they are not computed yet.

    Args:
        ws_root: the workspace folder.
        set_name: the synthetic set.
        folder: where the results are (default :func:`utility_folder`).

    Returns:
        None when the folder holds neither ``utility.json`` nor ``ef_agreement.json``;
        else a dict: ``folder``; ``table`` (utility.csv, DataFrame, or None when only EF
        agreement was computed), ``by_ef`` (utility_by_ef.csv or None), ``sentence`` (str
        or None), ``record`` (utility.json as read, or None); ``agreement`` (EF agreement:
        ``n``, ``mae`` / ``bias`` / ``pearson_r`` as ``{value, low, high, rule}``,
        ``sentence``, ``model``; from ef_agreement.json when that command was run, else
        from utility.json; None when neither has it) and ``agreement_points``
        (FileName, EF_requested, EF_predicted; None when not written).

    Raises:
        EchoAuditError (ConfigError for the JSON): a damaged or incomplete result file,
        named with what is wrong.
    """
    from echoaudit.fileio import read_json

    base = Path(folder) if folder is not None else utility_folder(ws_root, set_name)
    rec_path, agr_path = base / FILES["record"], base / FILES["agreement"]
    if not rec_path.exists() and not agr_path.exists():
        return None
    out = {"folder": base, "table": None, "by_ef": None, "sentence": None, "record": None, "agreement": None,
           "agreement_points": None}
    if rec_path.exists():
        rec = read_json(rec_path, what="utility results")
        sentence = rec.get("sentence")
        if not isinstance(sentence, str):
            raise ConfigError(f"utility results {str(rec_path)!r} have no sentence (got {sentence!r})")
        out.update(record=rec, sentence=sentence,
                   table=_read_csv(base / FILES["table"], _TABLE_NEEDS, "utility table"),
                   by_ef=_read_csv(base / FILES["by_ef"], _BY_EF_NEEDS, "utility errors by EF bin"))
        if rec.get("ef_agreement") is not None:
            out["agreement"] = _agreement(rec["ef_agreement"], f"EF agreement in {str(rec_path)!r}")
            if (base / FILES["agreement_points"]).exists():
                out["agreement_points"] = _read_csv(base / FILES["agreement_points"], _POINTS_NEEDS,
                                                    "EF agreement per video")
    if agr_path.exists():
        out["agreement"] = _agreement(read_json(agr_path, what="EF agreement results"),
                                      f"EF agreement {str(agr_path)!r}")
        out["agreement_points"] = _read_csv(base / FILES["agreement_csv"], _POINTS_NEEDS, "EF agreement per video")
    return out


def _ci(v, lo, hi, digits: int) -> str:
    if v is None or pd.isna(v):
        return "n/a"
    ends = "" if lo is None or pd.isna(lo) or hi is None or pd.isna(hi) else f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return f"{v:.{digits}f}{ends}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as a meeting reads it: one row per training set, each figure with its
    95 % interval as text, the MAE difference against (a) real TRAIN (positive = worse)."""
    rows = []
    for r in table.itertuples(index=False):
        trained = int(r.seeds) > 0 if not pd.isna(r.seeds) else False
        note = "" if pd.isna(getattr(r, "note", "")) else str(getattr(r, "note", ""))
        diff = "reference" if r.arm == "real" else (
            "n/a" if pd.isna(r.mae_vs_reference) else
            f"{r.mae_vs_reference:+.1f} [{r.mae_vs_reference_low:+.1f}, {r.mae_vs_reference_high:+.1f}]")
        rows.append({
            "training set": str(r.label), "videos": int(r.n_train), "seeds": int(r.seeds) if trained else 0,
            "MAE (EF points)": _ci(r.mae, r.mae_low, r.mae_high, 1) if trained else note or "not trained",
            "RMSE (EF points)": _ci(r.rmse, r.rmse_low, r.rmse_high, 1) if trained else "",
            "R^2": _ci(r.r2, r.r2_low, r.r2_high, 2) if trained else "",
            "MAE vs real (EF points)": diff if trained else "",
        })
    return pd.DataFrame(rows, columns=["training set", "videos", "seeds", "MAE (EF points)", "RMSE (EF points)", "R^2",
                                       "MAE vs real (EF points)"])
