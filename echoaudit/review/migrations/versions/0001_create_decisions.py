"""create the decisions table (append-only reviewer history)

Revision ID: 0001
Revises:
Create Date: 2026-05-10

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("decision_uid", sa.String(32), nullable=False),
        sa.Column("synthetic_set", sa.String(255), nullable=False),
        sa.Column("synthetic_video", sa.String(255), nullable=False),
        sa.Column("train_video", sa.String(255), nullable=False),
        sa.Column("train_patient", sa.String(255), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("reviewer", sa.String(255), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("reid_fingerprint", sa.String(128), nullable=False),
        sa.Column("index_fingerprint", sa.String(128), nullable=False),
        sa.Column("workspace", sa.Text(), nullable=False),
        sa.CheckConstraint("verdict IN ('confirmed_copy', 'not_a_copy', 'unsure')", name="ck_decisions_verdict"),
        sa.CheckConstraint("length(reviewer) > 0", name="ck_decisions_reviewer"),
        sa.CheckConstraint("score >= 0 AND score <= 1", name="ck_decisions_score"),
        sa.CheckConstraint("threshold >= 0 AND threshold <= 1", name="ck_decisions_threshold"),
        sa.UniqueConstraint("decision_uid", name="uq_decisions_decision_uid"),
    )
    op.create_index("ix_decisions_set_video", "decisions", ["synthetic_set", "synthetic_video"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_decisions_set_video", table_name="decisions")
    op.drop_table("decisions")
