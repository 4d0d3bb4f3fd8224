"""Who may do what with a topic, and whose a durable consumer name is.

A topic's owner is recorded when it is created through the server (``PUT /topics/{topic}``, a
WebSocket consumer or the observation service creating it); topics the server did not create
have no owner and only operators reach them until one grants access. A durable consumer name
given over the network belongs to its user: ``u<user id>.<name>`` on the engine, so two users'
``exporter`` are two consumers, and nobody can open or ack another user's.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from lakeport.errors import Invalid
from lakeport.server.access import (
    Level,
    claim,
    forget,
    levels_of_kind,
    recorded_level,
    require,
)
from lakeport.server.store import Store
from lakeport.server.store.users import User, users
from lakeport.streams.types import ConsumerInfo, TopicInfo, validate_topic_name

KIND = "topic"
_OWNED_NAME = re.compile(r"u(\d+)\.(.+)", re.DOTALL)


async def topic_level(store: Store, user: User, topic: str) -> Level:
    """The caller's level on ``topic``."""
    async with store.connect() as conn:
        level, _ = await recorded_level(conn, user, KIND, topic)
    return level


async def require_topic(store: Store, user: User, topic: str, need: Level, doing: str
                        ) -> Level:
    """The caller's level on ``topic``; NotFound / Forbidden when it is below ``need``."""
    level = await topic_level(store, user, topic)
    require(level, need, KIND, topic, doing)
    return level


async def claim_topic(store: Store, topic: str, owner_id: int, *, fresh: bool = False) -> None:
    """Record ``owner_id`` as the owner of ``topic`` unless it has one. ``fresh``: the topic
    was just created, so an owner or grants left from an earlier topic of that name go."""
    async with store.begin() as conn:
        if fresh:
            await forget(conn, KIND, topic)
        await claim(conn, store.dialect, KIND, topic, owner_id)


async def forget_topic(store: Store, topic: str) -> None:
    async with store.begin() as conn:
        await forget(conn, KIND, topic)


async def readable_topics(store: Store, user: User, names: list[str]) -> dict[str, Level]:
    """The caller's level on each of ``names`` it may read."""
    if user.admin:
        return dict.fromkeys(names, Level.OWNER)
    async with store.connect() as conn:
        levels = await levels_of_kind(conn, user, KIND)
    return {name: levels[name] for name in names if levels.get(name, Level.NONE) >= Level.READ}


def engine_consumer_name(user: User, name: Any) -> str | None:
    """The engine's name of the caller's durable consumer ``name`` (None: ephemeral)."""
    if name is None:
        return None
    validate_topic_name(name)
    prefixed = f"u{user.id}.{name}"
    if len(prefixed) > 200:
        raise Invalid(f"bad name {name!r}: consumer names over the network are at most "
                      f"{200 - len(prefixed) + len(name)} characters for this user")
    return prefixed


def user_consumer_name(user: User, engine_name: str) -> str:
    """The caller's own name of an engine consumer name made by :func:`engine_consumer_name`."""
    prefix = f"u{user.id}."
    return engine_name[len(prefix):] if engine_name.startswith(prefix) else engine_name


def user_message(user: User, text: str) -> str:
    """An engine's error message with the caller's consumer names as the caller wrote them."""
    return text.replace(f"'u{user.id}.", "'")


async def shown_info(store: Store, user: User, level: Level, info: TopicInfo) -> TopicInfo:
    """``info`` as the caller may see it: their own consumers under their own names; with
    admin access to the topic, every consumer (another user's as ``user/name``)."""
    names: dict[int, str] = {}
    if level >= Level.ADMIN:
        ids = {int(m[1]) for c in info.consumers if (m := _OWNED_NAME.fullmatch(c.name))}
        if ids:
            async with store.connect() as conn:
                names = dict((await conn.execute(
                    sa.select(users.c.id, users.c.name).where(users.c.id.in_(ids)))).all())
    shown: list[ConsumerInfo] = []
    for consumer in info.consumers:
        match = _OWNED_NAME.fullmatch(consumer.name)
        if match and int(match[1]) == user.id:
            shown.append(replace(consumer, name=match[2]))
        elif level >= Level.ADMIN:
            owner = names.get(int(match[1])) if match else None
            label = f"{owner}/{match[2]}" if match and owner else consumer.name
            shown.append(replace(consumer, name=label))
    return replace(info, consumers=shown)


__all__ = ["KIND", "claim_topic", "engine_consumer_name", "forget_topic", "readable_topics",
           "require_topic", "shown_info", "topic_level", "user_consumer_name",
           "user_message"]
