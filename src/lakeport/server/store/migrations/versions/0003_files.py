"""Data-lake files: metadata, directories, shares, relations.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _entry_fk() -> sa.ForeignKey:
    return sa.ForeignKey("lake_entries.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "lake_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("path", sa.String(1024), nullable=False, unique=True),
        sa.Column("parent", sa.String(1024), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("object_key", sa.String(200)),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("checksum", sa.String(80)),
        sa.Column("content_type", sa.String(200)),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("modified_ms", sa.BigInteger, nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_lake_entries_parent", "lake_entries", ["parent", "path"])
    op.create_index("ix_lake_entries_owner", "lake_entries", ["owner_id"])
    op.create_index("ix_lake_entries_modified", "lake_entries", ["modified_ms"])
    op.create_table(
        "lake_tags",
        sa.Column("entry_id", sa.Integer, _entry_fk(), primary_key=True),
        sa.Column("tag", sa.String(200), primary_key=True),
    )
    op.create_index("ix_lake_tags_tag", "lake_tags", ["tag"])
    op.create_table(
        "lake_meta",
        sa.Column("entry_id", sa.Integer, _entry_fk(), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "lake_shares",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entry_id", sa.Integer, _entry_fk(), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("permission", sa.String(8), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("entry_id", "user_id", name="uq_lake_shares_entry_user"),
    )
    op.create_index("ix_lake_shares_user", "lake_shares", ["user_id"])
    op.create_table(
        "lake_relations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("from_id", sa.Integer, _entry_fk(), nullable=False),
        sa.Column("to_id", sa.Integer, _entry_fk(), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("from_id", "to_id", "label", name="uq_lake_relations"),
    )
    op.create_index("ix_lake_relations_to", "lake_relations", ["to_id"])


def downgrade() -> None:
    for table in ("lake_relations", "lake_shares", "lake_meta", "lake_tags", "lake_entries"):
        op.drop_table(table)
