"""Course comparisons: a job can be a lesson's comparison grid.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the comparison kind and the values its panels show (both empty for plain jobs)."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("comparison", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("comparison_values", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop both columns; comparison jobs then read as plain jobs with their first settings."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("comparison_values")
        batch_op.drop_column("comparison")
