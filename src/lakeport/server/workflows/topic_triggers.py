"""Workflow triggers on topics: an instance per message of a topic whose fields match the
trigger's ``where``, once per message.

The trigger's cursor is the last seqno looked at (set to the topic's end when the version is
applied, so only messages that come later fire). Each tick reads what came after it with a
throwaway consumer and, in one transaction, starts the instances (each keyed by its seqno:
a message starts one instance however often it is read) and moves the cursor on.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from lakeport.errors import LakeportError
from lakeport.server.access import Level
from lakeport.server.store import Store
from lakeport.server.topics.access import require_topic
from lakeport.streams.base import EndOfTopic, Engine
from lakeport.streams.types import Position
from lakeport.workflows.definition import GIVEN, TopicTrigger

BATCH = 500
"""Messages read per topic trigger and tick."""
READ_TIMEOUT = 1.0
_MISSING = object()


def field_of(payload: Any, path: str) -> Any:
    """The value at ``path`` (``payload.meta.site``: dots go into nested objects); a
    missing field is :data:`_MISSING`."""
    value = payload
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def matches(payload: Any, where: dict[str, Any]) -> bool:
    """Whether every field of ``where`` has its value in ``payload``."""
    return all(field_of(payload, path) == value for path, value in where.items())


async def topic_end(engine: Engine, topic: str) -> int:
    """The topic's last seqno (NotFound when it does not exist)."""
    return (await engine.topic_info(topic)).last_seqno


async def check_topic(store: Store, engine: Engine, user: Any, trigger: TopicTrigger,
                      number: int) -> int:
    """The topic's last seqno, when ``user`` may read it; its errors name the trigger."""
    try:
        await require_topic(store, user, trigger.topic, Level.READ, "trigger a workflow on")
        return await topic_end(engine, trigger.topic)
    except LakeportError as exc:
        raise type(exc)(f"trigger {number} (topic): {exc}") from None


async def read_after(engine: Engine, topic: str, cursor: int) -> list[tuple[int, Any]]:
    """Up to :data:`BATCH` messages after seqno ``cursor`` as (seqno, payload)."""
    if cursor >= await topic_end(engine, topic):
        return []
    read: list[tuple[int, Any]] = []
    async with engine.consumer(f"workflow-trigger-{cursor}", topic,
                               position=Position.at_seqno(cursor + 1), ephemeral=True,
                               follow=False) as consumer:
        with contextlib.suppress(TimeoutError, EndOfTopic):  # read to the end
            while len(read) < BATCH:
                batch = await consumer.recv_batch(BATCH - len(read), timeout=READ_TIMEOUT)
                if not batch:
                    break
                for message in batch:
                    try:
                        payload = message.payload
                    except Exception:  # a payload that does not decode matches no filter
                        payload = None
                    read.append((message.seqno, payload))
    return read


def given_by(trigger: TopicTrigger, seqno: int, payload: Any) -> dict[str, str]:
    """The parameters a message gives an instance."""
    seqno_name, message_name = GIVEN["topic"]
    return {**trigger.parameters, seqno_name: str(seqno),
            message_name: orjson.dumps(payload, default=str).decode()}


async def scan_topic(store: Store, engine: Engine, row: Any, trigger: TopicTrigger,
                     owner: Any) -> tuple[list[tuple[int, Any]], int]:
    """The messages after the trigger's cursor that match its ``where``, when the owner
    may read the topic; (those, the last seqno looked at)."""
    cursor = int(row.cursor or 0)
    await require_topic(store, owner, trigger.topic, Level.READ, "trigger a workflow on")
    read = await read_after(engine, trigger.topic, cursor)
    if not read:
        return [], cursor
    return ([(seqno, payload) for seqno, payload in read if matches(payload, trigger.where)],
            read[-1][0])


__all__ = ["check_topic", "field_of", "given_by", "matches", "read_after", "scan_topic",
           "topic_end"]
