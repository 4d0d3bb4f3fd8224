"""One authorization model: an admin role, owners of resources without a table of their own
(topics), and grants on named resources.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN: rebuilding the table (batch mode) fails on SQLite once other tables
    # refer to its rows
    op.add_column("users", sa.Column("admin", sa.Boolean, nullable=False,
                                     server_default=sa.false()))
    op.create_table(
        "resource_owners",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(1024), primary_key=True),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("permission", sa.String(8), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("kind", "name", "user_id", name="uq_grants_resource_user"),
    )
    op.create_index("ix_grants_user", "grants", ["user_id", "kind"])
    _one_owner_per_tree()


def _one_owner_per_tree() -> None:
    """Entries created under another user's directory belonged to their creator; a tree now
    has one owner, that of its top-level entry."""
    bind = op.get_bind()
    entries = sa.table("lake_entries", sa.column("id", sa.Integer), sa.column("path", sa.String),
                       sa.column("owner_id", sa.Integer), sa.column("parent", sa.String))
    tops = dict(bind.execute(sa.select(entries.c.path, entries.c.owner_id)
                             .where(entries.c.parent == "")).all())
    changes = []
    for entry_id, path, owner_id in bind.execute(
            sa.select(entries.c.id, entries.c.path, entries.c.owner_id)
            .where(entries.c.parent != "")):
        top = tops.get(path.split("/", 1)[0])
        if top is not None and top != owner_id:
            changes.append({"entry": entry_id, "owner": top})
    if changes:
        bind.execute(entries.update().where(entries.c.id == sa.bindparam("entry"))
                     .values(owner_id=sa.bindparam("owner")), changes)


def downgrade() -> None:
    op.drop_table("grants")
    op.drop_table("resource_owners")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("admin")
