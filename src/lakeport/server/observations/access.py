"""Who may do what with sensors, features and observed properties: the server's access model
(``lakeport.server.access``) on the observation catalogue.

The creator owns a resource (its ``owner`` column). Every user may read the catalogue and its
observations; changing a resource or inserting observations of a sensor takes ``write``;
deleting it, deleting observations and granting access take ``admin``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import NotFound
from lakeport.server.access import DEFAULT_LEVEL, Level, granted_levels, level_of, require
from lakeport.server.observations.tables import features, properties, sensors
from lakeport.server.store.users import User

TABLES = {"sensor": sensors, "feature": features, "property": properties}
SHOWN = {"sensor": "sensor", "feature": "feature", "property": "observed property"}


async def level_on(conn: AsyncConnection, user: User, kind: str, row: Any) -> Level:
    """The caller's level on the catalogue resource ``row`` of ``kind``."""
    owns = row.owner == user.name
    granted = [] if owns or user.admin else await granted_levels(conn, user, kind, row.name)
    return level_of(user, owns, granted, DEFAULT_LEVEL[kind])


async def require_on(conn: AsyncConnection, user: User, kind: str, row: Any, need: Level,
                     doing: str) -> Any:
    """``row`` when the caller's level on it is at least ``need``; Forbidden naming what it
    takes otherwise."""
    require(await level_on(conn, user, kind, row), need, SHOWN[kind], row.name, doing,
            row.owner)
    return row


async def require_named(conn: AsyncConnection, user: User, kind: str, name: str, need: Level,
                        doing: str) -> Any:
    """The row of the catalogue resource ``name`` (id, name, owner) when the caller may
    ``doing`` it; NotFound when it does not exist."""
    table = TABLES[kind]
    row = (await conn.execute(sa.select(table.c.id, table.c.name, table.c.owner)
                              .where(table.c.name == name))).first()
    if row is None:
        raise NotFound(f"unknown {SHOWN[kind]} {name!r}")
    return await require_on(conn, user, kind, row, need, doing)


__all__ = ["SHOWN", "TABLES", "level_on", "require_named", "require_on"]
