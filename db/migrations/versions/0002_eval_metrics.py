"""eval metrics: token distribution, RES, latency, truncation, loops, reflection and SC figures

Revision ID: 0002_eval_metrics
Revises: 0001
Create Date: 2026-11-23

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002_eval_metrics"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = [
    ("median_output_tokens", sa.Float()),
    ("mean_thinking_tokens", sa.Float()),
    ("mean_answer_tokens", sa.Float()),
    ("res", sa.Float()),
    ("mean_latency_s", sa.Float()),
    ("truncated", sa.Integer()),
    ("repetition_loops", sa.Integer()),
    ("fixes", sa.Integer()),
    ("breaks", sa.Integer()),
    ("mean_agreement", sa.Float()),
]


def upgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        for name, _kind in reversed(COLUMNS):
            batch_op.drop_column(name)
