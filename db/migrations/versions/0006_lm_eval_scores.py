"""lm-eval-compatible scores per run: GSM8K strict-match and flexible-extract exact match, and the lm-eval task
whose rules they follow (per prediction they live in `predictions.details["lm_eval"]`)

Revision ID: 0006_lm_eval_scores
Revises: 0005_failure_taxonomy
Create Date: 2026-11-24

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006_lm_eval_scores"
down_revision: Union[str, None] = "0005_failure_taxonomy"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("strict_match", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("flexible_extract", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("lm_eval_task", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.drop_column("lm_eval_task")
        batch_op.drop_column("flexible_extract")
        batch_op.drop_column("strict_match")
