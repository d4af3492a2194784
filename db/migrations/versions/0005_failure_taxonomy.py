"""failure taxonomy: each wrong prediction's label, evidence and known reading; counts per label per run

Revision ID: 0005_failure_taxonomy
Revises: 0005_merge_features
Create Date: 2026-11-24

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005_failure_taxonomy"
down_revision: Union[str, None] = "0005_merge_features"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure_label", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column("failure_exact", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("failure_evidence", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failure_reading", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_predictions_failure_label"), ["failure_label"], unique=False)
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("taxonomy", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.drop_column("taxonomy")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_predictions_failure_label"))
        batch_op.drop_column("failure_reading")
        batch_op.drop_column("failure_evidence")
        batch_op.drop_column("failure_exact")
        batch_op.drop_column("failure_label")
