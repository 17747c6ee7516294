"""Inpainting results keep the user's pixels outside the mask, over a soft edge.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the soft edge's width. Existing jobs get NULL: they were not composited, and their
    rerolls should make the same pixels they did."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mask_blend", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop it; inpainting then returns the pipeline's pixels as they are."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("mask_blend")
