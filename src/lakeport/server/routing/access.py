"""Who may do what with rules and bridges: the server's one access model
(``lakeport.server.access``) on the ``rule`` and ``bridge`` kinds. Read: show, list, stats;
write: start, stop; admin: update, delete, grant (as with workflows).

A rule or bridge moves data with its owner's rights: creating or updating one checks that
its owner may read the topic it reads (a rule's source, an egress bridge's ``from_topic``)
and produce to every topic it writes (a rule's ``topic`` actions and dead-letter topic, an
ingest bridge's ``to_topic``); the manager checks again whenever it starts one, so a revoked
grant stops it at its next start. A target topic that does not exist yet is created for the
owner. Refusals are 403 naming the topic.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.errors import Conflict, Forbidden, NotFound
from lakeport.routing.bridge import BridgeConfig
from lakeport.routing.spec import RuleSpec, TopicAction
from lakeport.server.access import Level, owned_level, require
from lakeport.server.routing.tables import TABLES
from lakeport.server.store import Store
from lakeport.server.store.users import User, users
from lakeport.server.topics.access import claim_topic, topic_level
from lakeport.streams import Engine
from lakeport.tasks.spec import check_name

RULE, BRIDGE = "rule", "bridge"


def level_on(conn: Connection, user: User, kind: str, row: Any) -> Level:
    """The caller's level on the rule or bridge ``row``."""
    return owned_level(conn, user, kind, row.name, row.owner_id)


def resource_access(conn: Connection, user: User, kind: str, name: str, need: Level,
                    doing: str) -> Any:
    """The row (with ``owner``, its owner's name) when the caller may ``doing`` it;
    NotFound below read, as if it did not exist."""
    check_name(name, kind)
    table = TABLES[kind]
    row = conn.execute(sa.select(table, users.c.name.label("owner"))
                       .join(users, users.c.id == table.c.owner_id)
                       .where(table.c.name == name)).first()
    if row is None:
        raise NotFound(f"unknown {kind} {name!r}")
    require(level_on(conn, user, kind, row), need, kind, name, doing, row.owner)
    return row


def owner_of(conn: Connection, owner_id: int) -> User:
    row = conn.execute(sa.select(users).where(users.c.id == owner_id)).one()
    return User(row.id, row.name, admin=row.admin)


async def may_read(store: Store, owner: User, what: str, topic: str) -> None:
    """Forbidden naming ``topic`` unless ``owner`` may read it (consume)."""
    if await topic_level(store, owner, topic) < Level.READ:
        raise Forbidden(f"{what}: {owner.name} may not read topic {topic!r}")


async def may_produce(store: Store, engine: Engine, owner: User, what: str, topic: str,
                      *, create: bool = True) -> None:
    """Forbidden naming ``topic`` unless ``owner`` may produce to it; a topic that does not
    exist yet is created for ``owner`` (``create``)."""
    level = await topic_level(store, owner, topic)
    if level >= Level.WRITE:
        return
    if level < Level.READ and create:
        try:
            await engine.topic_info(topic)
        except NotFound:
            try:
                await engine.create_topic(topic)
            except Conflict:  # made meanwhile by someone else: their topic
                pass
            else:
                await claim_topic(store, topic, owner.id, fresh=True)
                return
    raise Forbidden(f"{what}: {owner.name} may not produce to topic {topic!r}")


SERVER_FILES = ("ca_file", "cert_file", "key_file")
"""Options that name files on the server's machine: an operator's to set."""


def check_server_files(owner: User, what: str, options: Any) -> None:
    """Forbidden when ``options`` (a bridge config or a broker action) names a file on the
    server and ``owner`` is no operator (a path would tell other users what files exist)."""
    named = [name for name in SERVER_FILES if getattr(options, name, None)]
    if named and not owner.admin:
        raise Forbidden(f"{what}: {', '.join(named)}: a file on the server's machine is an "
                        "operator's to name")


async def check_rule(store: Store, engine: Engine, owner: User, spec: RuleSpec,
                     source: str) -> None:
    """Forbidden unless ``owner`` may read the rule's ``source`` topic and produce to each
    topic it writes (and, no operator, names no file on the server)."""
    what = f"rule {spec.name!r}"
    for action in spec.actions:
        check_server_files(owner, what, action)
    await may_read(store, owner, what, source)
    targets = [a.topic for a in spec.actions if isinstance(a, TopicAction)]
    if spec.dead_letter_topic:
        targets.append(spec.dead_letter_topic)
    for topic in dict.fromkeys(targets):
        await may_produce(store, engine, owner, what, topic)


async def check_bridge(store: Store, engine: Engine, owner: User, name: str,
                       config: BridgeConfig) -> None:
    """Forbidden unless ``owner`` may produce to an ingest bridge's ``to_topic`` or read an
    egress bridge's ``from_topic`` (and, no operator, names no file on the server)."""
    what = f"bridge {name!r}"
    check_server_files(owner, what, config)
    if config.to_topic is not None:
        await may_produce(store, engine, owner, what, config.to_topic)
    if config.from_topic is not None:
        await may_read(store, owner, what, config.from_topic)


__all__ = ["BRIDGE", "RULE", "SERVER_FILES", "check_bridge", "check_rule", "check_server_files",
           "level_on", "may_produce", "may_read", "owner_of", "resource_access"]
