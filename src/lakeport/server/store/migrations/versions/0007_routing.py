"""The routing service: rules and bridges run by the server.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table, body in (("rules", "spec"), ("bridges", "config")):
        op.create_table(
            table,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(128), nullable=False, unique=True),
            sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column(body, sa.Text, nullable=False),
            sa.Column("desired", sa.String(8), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("error", sa.Text, nullable=True),
            sa.Column("created_ms", sa.BigInteger, nullable=False),
            sa.Column("updated_ms", sa.BigInteger, nullable=False),
        )


def downgrade() -> None:
    op.drop_table("bridges")
    op.drop_table("rules")
