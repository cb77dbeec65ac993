"""One reviewer decision as a plain record, and the checks every decision passes before
it is written (by :meth:`DecisionStore.record` and, row by row, by the CSV import).

A decision says what a reviewer concluded about one (synthetic video, training video)
pair and what they saw when they concluded it:

=================  ========  ============================================================
field              type      meaning
=================  ========  ============================================================
id                 int       row number in the database (local; not exported)
synthetic_set      str       the synthetic set (a workspace's generator name)
synthetic_video    str       the synthetic video (FileName, no ``.avi``)
train_video        str       the training video it was compared with
train_patient      str       that training video's patient
verdict            str       ``confirmed_copy``, ``not_a_copy`` or ``unsure``
reviewer           str       who decided (non-empty)
decided_at         datetime  when, timezone-aware UTC
note               str       free text (may be empty)
score              float     the pair's re-ID score the reviewer saw, probability [0, 1]
threshold          float     the memorization threshold in force, probability [0, 1]
rule               str       how that threshold was set (e.g. ``heldout_to_train p95``)
reid_fingerprint   str       sha256 of the re-ID model that made the score
index_fingerprint  str       sha256 of the index fingerprint (models + data it was built on)
workspace          str       the workspace the decision was made in (may be empty)
decision_uid       str       uuid4 hex, unique: importing the same export twice adds nothing
=================  ========  ============================================================

The history is append-only: a changed mind is a new decision, and the current verdict of
a pair is its latest decision (by ``decided_at``, ties by ``id``).
"""

from __future__ import annotations

import math
import numbers
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from echoaudit.errors import ReviewError

__all__ = ["VERDICTS", "CSV_COLUMNS", "Decision", "check_decision", "check_verdict", "parse_decided_at", "new_uid"]

#: The allowed verdicts.
VERDICTS: tuple[str, ...] = ("confirmed_copy", "not_a_copy", "unsure")

#: Columns of an exported CSV, in order (every field but the local ``id``).
CSV_COLUMNS: tuple[str, ...] = (
    "decision_uid", "synthetic_set", "synthetic_video", "train_video", "train_patient", "verdict",
    "reviewer", "decided_at", "note", "score", "threshold", "rule", "reid_fingerprint",
    "index_fingerprint", "workspace",
)

_REQUIRED_TEXT = ("synthetic_set", "synthetic_video", "train_video", "train_patient", "reviewer")
_FREE_TEXT = ("note", "rule", "reid_fingerprint", "index_fingerprint", "workspace")


@dataclass(frozen=True)
class Decision:
    """One stored decision (see the module docstring for each field)."""

    id: int | None
    decision_uid: str
    synthetic_set: str
    synthetic_video: str
    train_video: str
    train_patient: str
    verdict: str
    reviewer: str
    decided_at: datetime
    note: str
    score: float
    threshold: float
    rule: str
    reid_fingerprint: str
    index_fingerprint: str
    workspace: str

    def to_dict(self) -> dict:
        return asdict(self)


def new_uid() -> str:
    """A fresh decision uid: uuid4 as 32 lowercase hex digits."""
    return uuid.uuid4().hex


def parse_decided_at(value: object, where: str = "decided_at") -> datetime:
    """A timezone-aware datetime converted to UTC, from a datetime or an ISO 8601 string.

    Raises:
        ReviewError: not a datetime / ISO string, or no time zone (a naive time is
            ambiguous between reviewers in different places).
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ReviewError(f"{where}: {value!r} is not an ISO 8601 time; "
                              "write it like 2024-05-01T12:30:00+00:00") from None
    if not isinstance(value, datetime):
        raise ReviewError(f"{where} must be a timezone-aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ReviewError(f"{where}: {value.isoformat()} has no time zone; give one, e.g. "
                          f"{value.replace(tzinfo=timezone.utc).isoformat()}")
    return value.astimezone(timezone.utc)


def check_verdict(verdict: object, where: str = "") -> str:
    """The verdict, stripped, if it is one of :data:`VERDICTS`; else ReviewError."""
    if not isinstance(verdict, str) or verdict.strip() not in VERDICTS:
        raise ReviewError(f"{where}verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}")
    return verdict.strip()


def _probability(name: str, value: object, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ReviewError(f"{where}{name} must be a probability in [0, 1], got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ReviewError(f"{where}{name} must be a probability in [0, 1], got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ReviewError(f"{where}{name} must be a finite probability in [0, 1], got {v!r}")
    return v


def _uid(value: object, where: str) -> str:
    try:
        return uuid.UUID(str(value).strip()).hex
    except ValueError:
        raise ReviewError(f"{where}decision_uid must be a UUID (32 hex digits), got {value!r}") from None


def check_decision(fields: dict, *, where: str = "") -> dict:
    """Validate and normalise the fields of one decision (everything but ``id``).

    ``where`` prefixes every message (e.g. ``"row 3 (line 4), "``) so an import names the
    bad row. Returns a new dict: verdict and reviewer stripped, score and threshold as
    float, ``decided_at`` in UTC, ``decision_uid`` as 32 hex digits, free text as str.

    Raises:
        ReviewError: the first problem found, naming the field, the value and what is allowed.
    """
    out = dict(fields)
    out["verdict"] = check_verdict(out.get("verdict"), where)
    for name in _REQUIRED_TEXT:
        value = out.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ReviewError(f"{where}{name} must be a non-empty name, got {value!r}")
    out["reviewer"] = out["reviewer"].strip()
    for name in _FREE_TEXT:
        value = out.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ReviewError(f"{where}{name} must be text, got {type(value).__name__} {value!r}")
        out[name] = value
    out["score"] = _probability("score", out.get("score"), where)
    out["threshold"] = _probability("threshold", out.get("threshold"), where)
    out["decided_at"] = parse_decided_at(out.get("decided_at"), f"{where}decided_at")
    out["decision_uid"] = _uid(out.get("decision_uid"), where)
    unknown = set(out) - set(CSV_COLUMNS)
    if unknown:
        raise ReviewError(f"{where}unknown decision field(s) {sorted(unknown)}; allowed: {list(CSV_COLUMNS)}")
    return out
