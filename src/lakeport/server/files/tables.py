"""The file service's tables: entries (files and directories), tags, metadata, shares,
relations. Entries are addressed by path; objects in the lake by ``object_key``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from lakeport.server.store.schema import metadata
from lakeport.server.times import format_time

entries = sa.Table(
    "lake_entries", metadata,
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
    sa.Column("archived", sa.Boolean, nullable=False),
)
tags = sa.Table(
    "lake_tags", metadata,
    sa.Column("entry_id", sa.Integer, sa.ForeignKey("lake_entries.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("tag", sa.String(200), primary_key=True),
)
meta = sa.Table(
    "lake_meta", metadata,
    sa.Column("entry_id", sa.Integer, sa.ForeignKey("lake_entries.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
shares = sa.Table(
    "lake_shares", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("entry_id", sa.Integer, sa.ForeignKey("lake_entries.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("permission", sa.String(8), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("entry_id", "user_id"),
)
relations = sa.Table(
    "lake_relations", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("from_id", sa.Integer, sa.ForeignKey("lake_entries.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("to_id", sa.Integer, sa.ForeignKey("lake_entries.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("from_id", "to_id", "label"),
)


def record(row: Any, owner: str, tag_list: list[str] | None = None,
           meta_map: dict[str, str] | None = None) -> dict[str, Any]:
    """The info record of an entry row (files in full, directories in short)."""
    if row.kind == "dir":
        return {"path": row.path, "kind": "dir", "owner": owner,
                "created": format_time(row.created_ms)}
    return {
        "path": row.path, "size": row.size, "checksum": f"sha256:{row.checksum}",
        "content_type": row.content_type, "created": format_time(row.created_ms),
        "modified": format_time(row.modified_ms), "owner": owner, "tags": sorted(tag_list or []),
        "metadata": dict(meta_map or {}), "archived": bool(row.archived), "kind": "file",
    }


__all__ = ["entries", "meta", "record", "relations", "shares", "tags"]
