"""model runtime: perplexity on the reference solutions and what ran (quantization, thinking mode) per run

Revision ID: 0008_model_runtime
Revises: 0007_shipped_data
Create Date: 2026-11-24

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008_model_runtime"
down_revision: Union[str, None] = "0007_shipped_data"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("perplexity", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("run_info", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.drop_column("run_info")
        batch_op.drop_column("perplexity")
