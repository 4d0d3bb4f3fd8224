"""Who may do what with a path: the server's access model (``lakeport.server.access``) on
the lake's tree.

A tree has one owner: the owner of its top-level entry. Everything created under it belongs to
that owner, whoever created it, so a share never turns into ownership and revoking it ends all
access through it. A share gives READ, WRITE or ADMIN on the shared entry and everything under
it; operators have OWNER everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Conflict, Forbidden, NotFound
from lakeport.server.access import PERMISSIONS, Level, level_of
from lakeport.server.files.paths import ancestors
from lakeport.server.files.tables import entries, shares
from lakeport.server.store.users import User

NONE, READ, WRITE, ADMIN, OWNER = (Level.NONE, Level.READ, Level.WRITE, Level.ADMIN,
                                   Level.OWNER)


@dataclass
class Access:
    """An entry (or None), the caller's level on it, the entries above it by path, and the
    owner of its tree (None when nothing of the path exists yet)."""

    path: str
    row: Any
    level: Level
    above: dict[str, Any]
    tree_owner: int | None = None

    def nearest_dir(self) -> Any:
        """The deepest existing directory above the path (None: the lake root)."""
        for path in reversed(ancestors(self.path)):
            if path in self.above:
                return self.above[path]
        return None


async def access(conn: AsyncConnection, user: User, path: str) -> Access:
    """The caller's access to ``path`` (which may not exist)."""
    chain = [*ancestors(path), path]
    rows = (await conn.execute(
        sa.select(entries).where(entries.c.path.in_(chain)))).all()
    by_path = {row.path: row for row in rows}
    top = min(rows, key=lambda row: len(row.path), default=None)
    tree_owner = None if top is None else top.owner_id
    granted: list[str] = []
    if rows and not user.admin and tree_owner != user.id:
        granted = list((await conn.execute(
            sa.select(shares.c.permission).where(
                shares.c.user_id == user.id,
                shares.c.entry_id.in_([row.id for row in rows])))).scalars())
    level = level_of(user, tree_owner == user.id, [PERMISSIONS[p] for p in granted])
    row = by_path.pop(path, None)
    return Access(path, row, level, by_path, tree_owner)


def missing(path: str) -> NotFound:
    return NotFound(f"no file or directory '{path}'")


def require(found: Access, need: int, doing: str) -> Any:
    """The entry when the caller may ``doing`` it; NotFound / Forbidden otherwise."""
    if found.row is None or found.level < READ:
        raise missing(found.path)
    if found.level < need:
        who = "its owner" if need == OWNER else \
            f"its owner or a user it is shared with for {need.name.lower()}"
        raise Forbidden(f"cannot {doing} '{found.path}': only {who} can")
    return found.row


async def grant_roots(conn: AsyncConnection, user: User) -> list[str]:
    """Paths under which the caller may read everything (owned trees, shares)."""
    owned = sa.select(entries.c.path).where(entries.c.owner_id == user.id,
                                            entries.c.kind == "dir", entries.c.parent == "")
    shared = sa.select(entries.c.path).join(shares, shares.c.entry_id == entries.c.id).where(
        shares.c.user_id == user.id)
    paths = sorted(set((await conn.execute(owned.union(shared))).scalars().all()))
    roots: list[str] = []
    for path in paths:
        if not any(path.startswith(root + "/") for root in roots):
            roots.append(path)
    return roots


def check_creatable(found: Access) -> None:
    """Raise when a file lies above ``found.path``, or when the path does not exist and the
    caller may not write the deepest directory above it. What the caller cannot read is
    not revealed: NotFound."""
    hidden = found.level < READ and (found.row is not None or bool(found.above))
    for above, row in found.above.items():
        if row.kind == "file":
            if hidden:
                raise missing(found.path)
            raise Conflict(f"cannot create '{found.path}': '{above}' is a file")
    if found.row is None and found.nearest_dir() is not None and found.level < WRITE:
        if hidden:
            raise missing(found.path)
        raise Forbidden(f"cannot create '{found.path}': directory "
                        f"'{found.nearest_dir().path}' is not yours or shared with you for write")


def below(path: str, column: Any = entries.c.path) -> Any:
    """SQL: ``column`` lies below ``path``."""
    return sa.func.substr(column, 1, len(path) + 1) == path + "/"


def under(path: str, column: Any = entries.c.path) -> Any:
    """SQL: ``column`` is ``path`` or lies below it."""
    return sa.or_(column == path, below(path, column))


def readable(user: User, roots: list[str], table: Any = entries) -> Any:
    """SQL: rows of ``table`` (entries or an alias of it) the caller may read."""
    if user.admin:
        return sa.true()
    return sa.or_(table.c.owner_id == user.id, *[under(root, table.c.path) for root in roots])


__all__ = ["ADMIN", "NONE", "OWNER", "READ", "WRITE", "Access", "access",
           "below", "check_creatable", "grant_roots", "missing", "readable", "require", "under"]
