"""Moderation: both safety verdicts with each image, a review per flagged image, strikes.

Revision ID: moderation
Revises: 0003
Create Date: 2026-11-30 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "moderation"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Images made before get NULL verdicts: only their blurred flag was kept."""
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_flag", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("first_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("second_flag", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("second_score", sa.Float(), nullable=True))
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("image_index", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("original_path", sa.String(length=500), nullable=True),
        sa.Column("card_message_id", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.BigInteger(), nullable=True),
        sa.Column("decided_by_name", sa.String(length=100), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("delete_original_after", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_reviews_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(
            "uq_reviews_job_id_image_index", ["job_id", "image_index"], unique=True
        )
        batch_op.create_index("ix_reviews_state_id", ["state", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reviews_user_id"), ["user_id"], unique=False)
    op.create_table(
        "strikes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=True),
        sa.Column("moderator_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("pardoned_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews.id"],
            name=op.f("fk_strikes_review_id_reviews"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strikes")),
    )
    with op.batch_alter_table("strikes", schema=None) as batch_op:
        batch_op.create_index("ix_strikes_user_id_at", ["user_id", "at"], unique=False)


def downgrade() -> None:
    """Drop the moderation tables and the verdicts; the blurred flag stays."""
    op.drop_table("strikes")
    op.drop_table("reviews")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("second_score")
        batch_op.drop_column("second_flag")
        batch_op.drop_column("first_score")
        batch_op.drop_column("first_flag")
