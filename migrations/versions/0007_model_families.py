"""Models have a family (SD 1.x/2.x, SDXL, FLUX.1 schnell), which decides what jobs take.

Revision ID: model_families
Revises: adapters
Create Date: 2026-11-30 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "model_families"
down_revision: str | Sequence[str] | None = "adapters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the family; every model stored so far was Stable Diffusion 1.x/2.x, the only family
    the engine ran."""
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("family", sa.String(length=20), server_default="sd", nullable=False)
        )


def downgrade() -> None:
    """Drop it; the engine then runs SD 1.x/2.x models only."""
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("family")
