"""Who may do what with a path: owners, shares on a file or a directory above it.

Levels: NONE < READ < WRITE < OWNER. The owner of an entry, or of a directory above it, has
OWNER; a share gives READ or WRITE on the shared entry and everything under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Conflict, Forbidden, NotFound
from lakeport.server.files.paths import ancestors
from lakeport.server.files.tables import entries, shares
from lakeport.server.store.users import User

NONE, READ, WRITE, OWNER = 0, 1, 2, 3
PERMISSIONS = {"read": READ, "write": WRITE}


@dataclass
class Access:
    """An entry (or None), the caller's level on it, and the entries above it by path."""

    path: str
    row: Any
    level: int
    above: dict[str, Any]

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
    level = OWNER if any(row.owner_id == user.id for row in rows) else NONE
    if level < OWNER and rows:
        granted = (await conn.execute(
            sa.select(shares.c.permission).where(
                shares.c.user_id == user.id,
                shares.c.entry_id.in_([row.id for row in rows])))).scalars().all()
        level = max([PERMISSIONS.get(p, NONE) for p in granted], default=NONE)
    row = by_path.pop(path, None)
    return Access(path, row, level, by_path)


def missing(path: str) -> NotFound:
    return NotFound(f"no file or directory '{path}'")


def require(found: Access, need: int, doing: str) -> Any:
    """The entry when the caller may ``doing`` it; NotFound / Forbidden otherwise."""
    if found.row is None or found.level < READ:
        raise missing(found.path)
    if found.level < need:
        who = "its owner" if need == OWNER else "its owner or a user it is shared with for write"
        raise Forbidden(f"cannot {doing} '{found.path}': only {who} can")
    return found.row


async def grant_roots(conn: AsyncConnection, user: User) -> list[str]:
    """Paths under which the caller may read everything (owned directories, shares)."""
    owned = sa.select(entries.c.path).where(entries.c.owner_id == user.id,
                                            entries.c.kind == "dir")
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
    caller may not write the deepest directory above it."""
    for above, row in found.above.items():
        if row.kind == "file":
            raise Conflict(f"cannot create '{found.path}': '{above}' is a file")
    if found.row is None and found.nearest_dir() is not None and found.level < WRITE:
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
    return sa.or_(table.c.owner_id == user.id, *[under(root, table.c.path) for root in roots])


__all__ = ["NONE", "OWNER", "PERMISSIONS", "READ", "WRITE", "Access", "access", "below",
           "check_creatable", "grant_roots", "missing", "readable", "require", "under"]
