"""LoRAs and textual-inversion embeddings (the adapters admins offer, and each job's own), and
students' model suggestions (credited on the model once approved).

Revision ID: adapters
Revises: upscale
Create Date: 2026-11-30 17:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "adapters"
down_revision: str | Sequence[str] | None = "upscale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The adapters table, and the jobs' adapters by value (NULL: none, as every older job)."""
    op.create_table(
        "adapters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("lora", "embedding", name="adapterkind", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("family", sa.String(length=20), nullable=False),
        sa.Column("token", sa.String(length=60), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapters")),
        sa.UniqueConstraint("name", name=op.f("uq_adapters_name")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("adapters", sa.JSON(), nullable=True))
    op.create_table(
        "suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("user_name", sa.String(length=100), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "text_to_image",
                "inpaint",
                "image_to_image",
                name="jobkind",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("licence", sa.String(length=100), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "approved",
                "rejected",
                name="suggestionstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("decided_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suggestions")),
    )
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suggested_by", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop them; jobs then run without their adapters, models forget who suggested them."""
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("suggested_by")
    op.drop_table("suggestions")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("adapters")
    op.drop_table("adapters")
