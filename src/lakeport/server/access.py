"""The one authorization model of the server (docs/server/access.md).

Every resource has an owner. A user's access to a resource is one :class:`Level`: ``OWNER``
for its owner and for operators (users with the admin role), else the level of an explicit
grant to that user (``read``, ``write`` — called ``produce`` on topics — or ``admin``), else
the resource kind's default (``NONE``; ``READ`` for the observation catalogue). A service
computes the level with :func:`level_of` and checks it with :func:`require`; grants live in
one table for every kind but files, whose shares name paths (``files/access.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Forbidden, Invalid, NotFound
from lakeport.server.store import insert_ignore
from lakeport.server.store.schema import metadata, now_ms
from lakeport.server.store.users import User, users


class Level(IntEnum):
    """What a user may do with a resource; each level includes the ones below it."""

    NONE = 0
    READ = 1
    WRITE = 2
    ADMIN = 3
    OWNER = 4


PERMISSIONS = {"read": Level.READ, "write": Level.WRITE, "produce": Level.WRITE,
               "admin": Level.ADMIN}
"""Grantable permissions by name (``produce`` is ``write`` on topics)."""
KINDS = ("topic", "sensor", "feature", "property", "project", "workflow", "rule", "bridge")
"""Resource kinds whose grants live in :data:`grants` (files have shares)."""
DEFAULT_LEVEL = {"topic": Level.NONE, "sensor": Level.READ, "feature": Level.READ,
                 "property": Level.READ, "project": Level.NONE, "workflow": Level.NONE,
                 "rule": Level.NONE, "bridge": Level.NONE}
"""What every authenticated user may do without a grant: the observation catalogue (sensors,
features, properties and their observations) is readable by all; topics, task projects,
workflows, rules and bridges are private."""
WRITE_NAME = {"topic": "produce"}

resource_owners = sa.Table(
    "resource_owners", metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(1024), primary_key=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
grants = sa.Table(
    "grants", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(1024), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("permission", sa.String(8), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("kind", "name", "user_id", name="uq_grants_resource_user"),
)


def permission_name(kind: str, level: Level) -> str:
    """The name of a granted level on ``kind`` (``write`` is ``produce`` on topics)."""
    if level == Level.WRITE:
        return WRITE_NAME.get(kind, "write")
    return level.name.lower()


def parse_permission(kind: str, name: str) -> Level:
    """The level a permission name grants on ``kind``; Invalid naming the choices."""
    write = WRITE_NAME.get(kind, "write")
    choices = ("read", write, "admin")
    if name not in choices:
        raise Invalid(f"bad permission {name!r} for a {kind}: use {', '.join(choices)}")
    return PERMISSIONS[name]


def level_of(user: User, owns: bool, granted: Iterable[Level] = (),
             default: Level = Level.NONE) -> Level:
    """The caller's level on a resource: ``OWNER`` when the caller ``owns`` it or is an
    operator, else the best of its ``granted`` levels and the kind's ``default``."""
    if user.admin or owns:
        return Level.OWNER
    return max([default, *granted])


def require(level: Level, need: Level, kind: str, name: str, doing: str,
            owner: str | None = None) -> None:
    """NotFound when the caller may not even read the resource (its existence is not
    revealed); Forbidden naming what it takes (and the ``owner``) when the level is below
    ``need``."""
    if level < Level.READ:
        raise NotFound(f"unknown {kind} {name!r}")
    if level < need:
        what = "its owner" if need == Level.OWNER else \
            f"its owner or a user with {permission_name(kind, need)} access"
        whose = f" (owner {owner!r})" if owner else ""
        raise Forbidden(f"cannot {doing} {kind} {name!r}{whose}: only {what} can")


def grants_query(user: User, kind: str, name: str) -> sa.Select:
    """The permissions of the caller's grants on a resource (for :func:`levels_of_grants`)."""
    return sa.select(grants.c.permission).where(
        grants.c.kind == kind, grants.c.name == name, grants.c.user_id == user.id)


def levels_of_grants(permissions: Iterable[str]) -> list[Level]:
    return [PERMISSIONS.get(p, Level.NONE) for p in permissions]


def owned_level(conn: Connection, user: User, kind: str, name: str, owner_id: int) -> Level:
    """The caller's level on a resource of ``kind`` owned by ``owner_id``: its owner's (and
    operators') ``OWNER``, else what its grants give (synchronous: inside
    :meth:`Store.transact <lakeport.server.store.Store.transact>`)."""
    if user.admin or owner_id == user.id:
        return Level.OWNER
    return level_of(user, False, levels_of_grants(
        conn.execute(grants_query(user, kind, name)).scalars()), DEFAULT_LEVEL[kind])


async def granted_levels(conn: AsyncConnection, user: User, kind: str, name: str
                         ) -> list[Level]:
    """The levels of the caller's grants on a resource."""
    return levels_of_grants((await conn.execute(grants_query(user, kind, name))).scalars())


async def owner_id_of(conn: AsyncConnection, kind: str, name: str) -> int | None:
    """The owner's user id of a resource recorded in :data:`resource_owners`."""
    return (await conn.execute(sa.select(resource_owners.c.owner_id).where(
        resource_owners.c.kind == kind, resource_owners.c.name == name))).scalar()


async def recorded_level(conn: AsyncConnection, user: User, kind: str, name: str
                         ) -> tuple[Level, int | None]:
    """(the caller's level, the owner's id) on a resource whose owner is recorded in
    :data:`resource_owners` (topics), in one query."""
    owner = sa.select(resource_owners.c.owner_id).where(
        resource_owners.c.kind == kind, resource_owners.c.name == name).scalar_subquery()
    permission = sa.select(grants.c.permission).where(
        grants.c.kind == kind, grants.c.name == name,
        grants.c.user_id == user.id).scalar_subquery()
    owner_id, granted = (await conn.execute(sa.select(owner, permission))).one()
    levels = [PERMISSIONS[granted]] if granted in PERMISSIONS else []
    return level_of(user, owner_id == user.id, levels, DEFAULT_LEVEL[kind]), owner_id


async def user_id_named(conn: AsyncConnection, name: str) -> int | None:
    return (await conn.execute(sa.select(users.c.id).where(users.c.name == name))).scalar()


async def claim(conn: AsyncConnection, dialect: str, kind: str, name: str, owner_id: int
                ) -> int:
    """Record ``owner_id`` as the owner of a resource unless it has one; the owner's id."""
    await conn.execute(insert_ignore(dialect, resource_owners).values(
        kind=kind, name=name, owner_id=owner_id, created_ms=now_ms()))
    found = await owner_id_of(conn, kind, name)
    assert found is not None
    return found


async def forget(conn: AsyncConnection, kind: str, name: str) -> None:
    """Drop the owner and the grants of a deleted resource."""
    await conn.execute(resource_owners.delete().where(resource_owners.c.kind == kind,
                                                      resource_owners.c.name == name))
    await conn.execute(grants.delete().where(grants.c.kind == kind, grants.c.name == name))


async def levels_of_kind(conn: AsyncConnection, user: User, kind: str) -> dict[str, Level]:
    """The caller's level on each resource of ``kind`` it owns (as recorded in
    :data:`resource_owners`) or holds a grant on, in one query."""
    owned = sa.select(resource_owners.c.name, sa.literal("owner").label("permission")).where(
        resource_owners.c.kind == kind, resource_owners.c.owner_id == user.id)
    shared = sa.select(grants.c.name, grants.c.permission).where(
        grants.c.kind == kind, grants.c.user_id == user.id)
    levels: dict[str, Level] = {}
    for name, permission in await conn.execute(owned.union_all(shared)):
        level = Level.OWNER if permission == "owner" else PERMISSIONS.get(permission,
                                                                           Level.NONE)
        levels[name] = max(level, levels.get(name, Level.NONE))
    return levels


__all__ = [
    "DEFAULT_LEVEL",
    "KINDS",
    "PERMISSIONS",
    "Level",
    "claim",
    "forget",
    "granted_levels",
    "grants",
    "level_of",
    "levels_of_kind",
    "owned_level",
    "owner_id_of",
    "parse_permission",
    "permission_name",
    "recorded_level",
    "require",
    "resource_owners",
    "user_id_named",
]
