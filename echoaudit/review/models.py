"""The ``decisions`` table as a SQLAlchemy 2 declarative model.

The schema itself is created and changed only by the Alembic revisions in
``migrations/versions`` (run by :func:`echoaudit.review.schema.upgrade`); this model must
describe the same table, and the tests compare the two.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import CheckConstraint, DateTime, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from echoaudit.review.decision import VERDICTS

__all__ = ["Base", "DecisionRow", "UTCDateTime"]


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    SQLite keeps no offset (SQLAlchemy writes ``YYYY-MM-DD HH:MM:SS.ffffff``): values are
    converted to UTC before they are written, so the stored text sorts in time order, and
    UTC is attached again when they are read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"decided_at must be timezone-aware, got {value!r}")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


_VERDICT_SQL = ", ".join(f"'{v}'" for v in VERDICTS)


class DecisionRow(Base):
    """One row of the append-only decision history."""

    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint(f"verdict IN ({_VERDICT_SQL})", name="ck_decisions_verdict"),
        CheckConstraint("length(reviewer) > 0", name="ck_decisions_reviewer"),
        CheckConstraint("score >= 0 AND score <= 1", name="ck_decisions_score"),
        CheckConstraint("threshold >= 0 AND threshold <= 1", name="ck_decisions_threshold"),
        UniqueConstraint("decision_uid", name="uq_decisions_decision_uid"),
        Index("ix_decisions_set_video", "synthetic_set", "synthetic_video"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_uid: Mapped[str] = mapped_column(String(32), nullable=False)
    synthetic_set: Mapped[str] = mapped_column(String(255), nullable=False)
    synthetic_video: Mapped[str] = mapped_column(String(255), nullable=False)
    train_video: Mapped[str] = mapped_column(String(255), nullable=False)
    train_patient: Mapped[str] = mapped_column(String(255), nullable=False)
    verdict: Mapped[str] = mapped_column(String(32), nullable=False)
    reviewer: Mapped[str] = mapped_column(String(255), nullable=False)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    score: Mapped[float] = mapped_column(Float, nullable=False)
    threshold: Mapped[float] = mapped_column(Float, nullable=False)
    rule: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    reid_fingerprint: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    index_fingerprint: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    workspace: Mapped[str] = mapped_column(Text, nullable=False, default="")
