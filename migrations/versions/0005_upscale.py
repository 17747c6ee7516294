"""x4 upscaling: the noise level a job's upscaler was told, and upscale as a job and model kind.

Revision ID: upscale
Revises: moderation
Create Date: 2026-11-30 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "upscale"
down_revision: str | Sequence[str] | None = "moderation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the noise level. Existing jobs get the default; only upscales read it. The kind
    columns are plain strings (no CHECK constraint), so "upscale" needs no change there."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("noise_level", sa.Integer(), nullable=False, server_default="20")
        )


def downgrade() -> None:
    """Drop it (upscale jobs and upscaler models stay as rows no older code runs)."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("noise_level")
