"""training and audit results

Revision ID: 0003_training
Revises: 0001
Create Date: 2026-11-23 12:35:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003_training'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('train_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('adapter_uri', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('adapter_bytes', sa.Integer(), nullable=False),
    sa.Column('adapter_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('device', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('examples', sa.Integer(), nullable=False),
    sa.Column('loss_curve', sa.JSON(), nullable=False),
    sa.Column('tokens_seen', sa.Integer(), nullable=False),
    sa.Column('wall_s', sa.Float(), nullable=False),
    sa.Column('tokens_per_s', sa.Float(), nullable=False),
    sa.Column('peak_memory_mb', sa.Float(), nullable=False),
    sa.Column('memory_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('resumed_from_step', sa.Integer(), nullable=True),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id')
    )
    op.create_table('audit_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('train_job_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('mean_nll', sa.Float(), nullable=False),
    sa.Column('correct', sa.Integer(), nullable=False),
    sa.Column('pass_at_1', sa.Float(), nullable=False),
    sa.Column('ci_low', sa.Float(), nullable=False),
    sa.Column('ci_high', sa.Float(), nullable=False),
    sa.Column('per_example', sa.JSON(), nullable=False),
    sa.Column('wall_s', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.ForeignKeyConstraint(['train_job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id')
    )
    with op.batch_alter_table('audit_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_results_train_job_id'), ['train_job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_results_train_job_id'))
    op.drop_table('audit_results')
    op.drop_table('train_results')
