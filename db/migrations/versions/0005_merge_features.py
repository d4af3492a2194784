"""merge the eval-metrics, training and fleet branches

Revision ID: 0005_merge_features
Revises: 0002_eval_metrics, 0003_training, 0004_fleet
Create Date: 2026-11-23
"""

revision = "0005_merge_features"
down_revision = ("0002_eval_metrics", "0003_training", "0004_fleet")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
