"""curated data: train/eval overlap per sweep, and the curated datasets curate jobs build

Revision ID: 0009_curated_data
Revises: 0008_model_runtime
Create Date: 2026-11-24

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009_curated_data"
down_revision: Union[str, None] = "0008_model_runtime"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("overlap", sa.JSON(), nullable=True))
    op.create_table(
        "curated_datasets",
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("uri", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index(op.f("ix_curated_datasets_name"), "curated_datasets", ["name"], unique=False)
    op.create_index(op.f("ix_curated_datasets_job_id"), "curated_datasets", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_curated_datasets_job_id"), table_name="curated_datasets")
    op.drop_index(op.f("ix_curated_datasets_name"), table_name="curated_datasets")
    op.drop_table("curated_datasets")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_column("overlap")
