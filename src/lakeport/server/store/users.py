"""Users and API keys. A key is shown once; the store keeps its SHA-256 only."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from lakeport.errors import Invalid, NotFound
from lakeport.server.store import Store
from lakeport.server.store.schema import metadata, now_ms
from lakeport.streams.types import TOPIC_NAME_RE

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("worker", sa.Boolean, nullable=False, server_default=sa.false()),
)
api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False),
)

KEY_PREFIX = "lpk_"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    admin: bool = False
    """The operator role: full access to every resource (``lakeport keys create --admin``)."""
    worker: bool = False
    """The worker role: may claim task runs and act on the attempts it claimed
    (``lakeport keys create --worker``), nothing more."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    prefix: str
    user: str
    label: str
    created_ms: int
    revoked: bool


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not TOPIC_NAME_RE.fullmatch(name) or len(name) > 200:
        raise Invalid(f"bad user name {name!r}: use 1-200 characters from A-Z a-z 0-9 "
                      "and + _ = : @ . -")
    return name


async def ensure_user(store: Store, name: str) -> User:
    """The user called ``name``, created when missing."""
    check_user_name(name)
    async with store.begin() as conn:
        row = (await conn.execute(sa.select(users.c.id).where(users.c.name == name))).first()
        if row is not None:
            return User(row.id, name)
        try:
            result = await conn.execute(users.insert().values(name=name, created_ms=now_ms()))
        except IntegrityError:  # created concurrently
            pass
        else:
            return User(result.inserted_primary_key[0], name)
    return await get_user(store, name)


async def get_user(store: Store, name: str) -> User:
    async with store.connect() as conn:
        row = (await conn.execute(sa.select(users.c.id).where(users.c.name == name))).first()
    if row is None:
        raise NotFound(f"no user named {name!r}")
    return User(row.id, name)


async def set_admin(store: Store, user_name: str, admin: bool) -> None:
    """Give ``user_name`` the operator role (or take it away)."""
    await _set_role(store, user_name, admin=admin)


async def set_worker(store: Store, user_name: str, worker: bool) -> None:
    """Give ``user_name`` the worker role (or take it away)."""
    await _set_role(store, user_name, worker=worker)


async def _set_role(store: Store, user_name: str, **role: bool) -> None:
    async with store.begin() as conn:
        result = await conn.execute(users.update().where(users.c.name == user_name)
                                    .values(**role))
    if not result.rowcount:
        raise NotFound(f"no user named {user_name!r}")


async def create_key(store: Store, user_name: str, label: str = "", *,
                     admin: bool | None = None, worker: bool | None = None) -> str:
    """A new API key for ``user_name`` (the user is created when missing); shown only now.
    ``admin`` gives the user the operator role (True) or takes it away (False); ``worker``
    the same for the worker role."""
    user = await ensure_user(store, user_name)
    if admin is not None:
        await set_admin(store, user_name, admin)
    if worker is not None:
        await set_worker(store, user_name, worker)
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    async with store.begin() as conn:
        await conn.execute(api_keys.insert().values(
            user_id=user.id, prefix=prefix, key_hash=hash_key(key), label=label,
            created_ms=now_ms(), revoked=False))
    return key


async def user_for_key(store: Store, key: str) -> User | None:
    """The user owning ``key``, or None when it is unknown or revoked."""
    query = (sa.select(users.c.id, users.c.name, users.c.admin, users.c.worker)
             .select_from(api_keys.join(users, api_keys.c.user_id == users.c.id))
             .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked.is_(False)))
    async with store.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else User(row.id, row.name, bool(row.admin), bool(row.worker))


async def list_keys(store: Store, user_name: str | None = None) -> list[KeyInfo]:
    query = (sa.select(api_keys.c.prefix, users.c.name, api_keys.c.label, api_keys.c.created_ms,
                       api_keys.c.revoked)
             .select_from(api_keys.join(users, api_keys.c.user_id == users.c.id))
             .order_by(api_keys.c.id))
    if user_name is not None:
        query = query.where(users.c.name == user_name)
    async with store.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [KeyInfo(r.prefix, r.name, r.label, r.created_ms, r.revoked) for r in rows]


async def revoke_key(store: Store, prefix: str) -> None:
    """Revoke the key whose prefix (``lpk_<prefix>_...``) is ``prefix``."""
    prefix = prefix.removeprefix(KEY_PREFIX).split("_", 1)[0]
    async with store.begin() as conn:
        result = await conn.execute(
            api_keys.update().where(api_keys.c.prefix == prefix).values(revoked=True))
    if not result.rowcount:
        raise NotFound(f"no API key with prefix {prefix!r} (lakeport keys list shows them)")


__all__ = ["KEY_PREFIX", "KeyInfo", "User", "api_keys", "create_key", "ensure_user",
           "get_user", "hash_key", "list_keys", "revoke_key", "set_admin", "set_worker",
           "user_for_key",
           "users"]
