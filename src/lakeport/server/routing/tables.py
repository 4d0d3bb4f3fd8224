"""The routing service's tables: rules and bridges that run inside the server.

``desired`` is what the users asked for (``running`` or ``stopped``); ``state`` and
``error`` are what the server running them last saw (``starting``, ``running``,
``retrying``, ``stopped``, ``failed``). ``updated_ms`` changes with every change of the
definition or of ``desired``: the server that runs them restarts a rule whose ``updated_ms``
is not the one it started. Secrets in ``spec`` / ``config`` are ``<% secrets.NAME %>``
references to the server's secret store, never the values.
"""

from __future__ import annotations

import sqlalchemy as sa

from lakeport.server.store.schema import metadata

rules = sa.Table(
    "rules", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # RuleSpec as JSON
    sa.Column("desired", sa.String(8), nullable=False),  # running | stopped
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
bridges = sa.Table(
    "bridges", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("config", sa.Text, nullable=False),  # BridgeConfig as JSON
    sa.Column("desired", sa.String(8), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

TABLES = {"rule": rules, "bridge": bridges}

__all__ = ["TABLES", "bridges", "rules"]
