"""What rules and bridges have in common in the store: rows with an owner, a JSON body
(``spec`` / ``config``) whose secrets are references, a desired and a last seen state; how a
row is shown, saved, listed, started, stopped and deleted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import Request
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from lakeport.apps.secrets import SecretStore
from lakeport.errors import Conflict, Invalid
from lakeport.server.access import Level, grants
from lakeport.server.paging import decode_cursor, encode_cursor
from lakeport.server.routing.access import BRIDGE, RULE, level_on, resource_access
from lakeport.server.routing.manager import Manager
from lakeport.server.routing.secret_fields import (
    drop_secrets,
    mask_bridge,
    mask_rule,
    prefix_of,
    store_secrets,
)
from lakeport.server.routing.tables import TABLES
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User, users
from lakeport.server.times import format_time

BODY = {RULE: "spec", BRIDGE: "config"}
MASK = {RULE: mask_rule, BRIDGE: mask_bridge}
Hide = Callable[[dict[str, Any] | None], tuple[dict[str, Any], dict[str, str]]]
"""Given the stored body of the resource (None: a new one), the body to store and the
secrets to keep."""


def manager_of(request: Request) -> Manager:
    return request.app.state.routing


def secret_store(request: Request) -> SecretStore:
    return request.app.state.routing_secrets


def body_of(kind: str, row: Any) -> dict[str, Any]:
    return orjson.loads(getattr(row, BODY[kind]))


def shown(kind: str, row: Any) -> dict[str, Any]:
    """A row as answers show it (secrets ``***``)."""
    return {"name": row.name, BODY[kind]: MASK[kind](body_of(kind, row)), "owner": row.owner,
            "desired": row.desired, "state": row.state, "error": row.error,
            "created": format_time(row.created_ms), "updated": format_time(row.updated_ms)}


def _select(kind: str) -> sa.Select:
    table = TABLES[kind]
    return sa.select(table, users.c.name.label("owner")).join(
        users, users.c.id == table.c.owner_id)


def _next_ms(row: Any) -> int:
    return max(now_ms(), row.updated_ms + 1)  # a change is always a new updated_ms


async def require_free(store: Store, kind: str, name: str) -> None:
    """Conflict when a rule or bridge ``name`` exists (whoever may see it)."""
    table = TABLES[kind]
    exists = sa.select(table.c.id).where(table.c.name == name)
    if await store.transact(lambda conn: conn.execute(exists).first()) is not None:
        raise Conflict(f"{kind} {name!r} exists already")


async def create(request: Request, store: Store, user: User, kind: str, name: str,
                 hide: Hide, start: bool) -> dict[str, Any]:
    """Insert a new rule or bridge of ``user`` (its access checked before); 409 when the
    name is taken."""
    table = TABLES[kind]
    await require_free(store, kind, name)
    body, found = hide(None)
    store_secrets(secret_store(request), found)
    now = now_ms()

    def insert(conn: Connection) -> dict[str, Any]:
        conn.execute(table.insert().values(
            name=name, owner_id=user.id, desired="running" if start else "stopped",
            state="starting" if start else "stopped", error=None, created_ms=now,
            updated_ms=now, **{BODY[kind]: orjson.dumps(body).decode()}))
        return shown(kind, conn.execute(_select(kind).where(table.c.name == name)).one())

    try:
        record = await store.transact(insert)
    except IntegrityError:
        raise Conflict(f"{kind} {name!r} exists already") from None
    manager_of(request).notify()
    return record


async def update(request: Request, store: Store, user: User, kind: str, name: str,
                 hide: Hide, check: Callable[[User], Awaitable[None]],
                 start: bool | None) -> dict[str, Any]:
    """Replace the body of a rule or bridge (admin); a running one restarts with it. The
    owner's access is checked by ``check`` (given the owner) before."""
    table = TABLES[kind]
    row = await store.transact(lambda conn: resource_access(conn, user, kind, name,
                                                            Level.ADMIN, "update"))
    owner = User(row.owner_id, row.owner, admin=await store.transact(
        lambda conn: conn.execute(sa.select(users.c.admin).where(
            users.c.id == row.owner_id)).scalar_one()))
    await check(owner)
    body, found = hide(body_of(kind, row))
    secrets = secret_store(request)
    store_secrets(secrets, found)
    text = orjson.dumps(body).decode()
    desired = row.desired if start is None else "running" if start else "stopped"

    def save(conn: Connection) -> dict[str, Any]:
        conn.execute(table.update().where(table.c.id == row.id).values(
            desired=desired, state="starting" if desired == "running" else "stopped",
            error=None, updated_ms=_next_ms(row), **{BODY[kind]: text}))
        return shown(kind, conn.execute(_select(kind).where(table.c.id == row.id)).one())

    record = await store.transact(save)
    drop_secrets(secrets, prefix_of(kind, name), getattr(row, BODY[kind]), keep=text)
    manager_of(request).notify()
    return record


async def show(store: Store, user: User, kind: str, name: str) -> Any:
    """The row when the caller may read it."""
    return await store.transact(lambda conn: resource_access(conn, user, kind, name,
                                                             Level.READ, "read"))


async def listing(store: Store, user: User, kind: str, limit: int, cursor: str | None,
                  item: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """A page of the rules or bridges the caller may read, by name."""
    after = decode_cursor(cursor)
    if after is not None and not isinstance(after, str):
        raise Invalid("bad cursor")
    table = TABLES[kind]

    def page(conn: Connection) -> tuple[list[dict[str, Any]], str | None]:
        query = _select(kind).order_by(table.c.name)
        if after is not None:
            query = query.where(table.c.name > after)
        items: list[dict[str, Any]] = []
        last = None
        for row in conn.execute(query):
            if level_on(conn, user, kind, row) < Level.READ:
                continue
            if len(items) == limit:
                return items, last
            items.append(item(row))
            last = row.name
        return items, None

    items, more = await store.transact(page)
    return {"items": items, "next_cursor": encode_cursor(more) if more else None}


async def set_desired(request: Request, store: Store, user: User, kind: str, name: str,
                      start: bool) -> dict[str, Any]:
    """Start or stop a rule or bridge (write); starting a failed one tries again."""
    table = TABLES[kind]
    desired = "running" if start else "stopped"

    def change(conn: Connection) -> dict[str, Any]:
        row = resource_access(conn, user, kind, name, Level.WRITE,
                              "start" if start else "stop")
        if row.desired != desired or (start and row.state == "failed"):
            conn.execute(table.update().where(table.c.id == row.id).values(
                desired=desired, state="starting" if start else "stopped", error=None,
                updated_ms=_next_ms(row)))
        return shown(kind, conn.execute(_select(kind).where(table.c.id == row.id)).one())

    record = await store.transact(change)
    manager = manager_of(request)
    manager.notify()
    if not start:
        await manager.stopped(kind, name)
    return record


async def delete(request: Request, store: Store, user: User, kind: str, name: str) -> None:
    """Delete a rule or bridge (admin) with its grants and secrets; it stops."""
    table = TABLES[kind]

    def remove(conn: Connection) -> Any:
        row = resource_access(conn, user, kind, name, Level.ADMIN, "delete")
        conn.execute(table.delete().where(table.c.id == row.id))
        conn.execute(grants.delete().where(grants.c.kind == kind, grants.c.name == name))
        return row

    row = await store.transact(remove)
    drop_secrets(secret_store(request), prefix_of(kind, name), getattr(row, BODY[kind]))
    manager = manager_of(request)
    manager.notify()
    await manager.stopped(kind, name)  # answer once it has stopped


__all__ = ["BODY", "create", "delete", "listing", "manager_of", "require_free",
           "secret_store", "set_desired", "show", "shown", "update"]
