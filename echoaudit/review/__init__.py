"""Reviewer decisions: who judged which (synthetic video, training video) pair a copy,
when, and what they saw, in a real database (a SQLite file in the workspace by default,
any SQLAlchemy URL through ``ECHOAUDIT_DB``), with Alembic migrations run on open.

Modules: ``decision`` (the record and its checks), ``models`` (the SQLAlchemy table),
``schema`` (Alembic), ``store`` (:class:`DecisionStore`), ``tables`` (review queue and
release list, pure functions).
"""

from echoaudit.review.decision import CSV_COLUMNS, VERDICTS, Decision
from echoaudit.review.store import DB_ENV, DB_FILE, HISTORY_COLUMNS, DecisionStore
from echoaudit.review.tables import ReleaseList, pair_context, release_list, review_queue, video_verdicts

__all__ = [
    "VERDICTS",
    "CSV_COLUMNS",
    "HISTORY_COLUMNS",
    "DB_ENV",
    "DB_FILE",
    "Decision",
    "DecisionStore",
    "ReleaseList",
    "review_queue",
    "release_list",
    "video_verdicts",
    "pair_context",
]
