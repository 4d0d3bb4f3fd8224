"""Dead letters: a message a step or an exporter cannot process goes, as it was, to a dead
letter topic, and the pipeline goes on.

A dead letter topic has the ``bytes`` format: each dead letter is the original message
unchanged (payload bytes, key, headers) plus ``dead-letter-*`` headers saying where it came
from and why (``-topic``, ``-seqno``, ``-producer``, ``-time``, ``-format``, ``-reason`` and
the processor's own, such as ``-step``), so a fixed message can be produced again as it was.
A dead letter topic made as a ``json`` topic by an older version gets a JSON record instead,
with the exact payload bytes in ``message.payload_base64``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from lakeport.streams.base import Producer
from lakeport.streams.types import Format, Message, TopicOptions

REASON_CHARS = 1000
"""A reason quoting a huge field is cut to this many characters."""
OPTIONS = TopicOptions(format=Format.BYTES)
"""The options of a new dead letter topic."""


def dead_letter_headers(topic: str, message: Message, reason: str,
                        context: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers of a dead letter: the message's own, then where it came from and why."""
    if len(reason) > REASON_CHARS:
        reason = reason[:REASON_CHARS] + "…"
    return {**(message.headers or {}), "dead-letter-topic": topic,
            "dead-letter-seqno": str(message.seqno), "dead-letter-producer": message.producer,
            "dead-letter-time": message.time.isoformat().replace("+00:00", "Z"),
            "dead-letter-format": message.format.value, "dead-letter-reason": reason,
            **{f"dead-letter-{name}": value for name, value in (context or {}).items()}}


def _record(topic: str, message: Message, reason: str, context: Mapping[str, str],
            fmt: Format) -> Any:
    try:
        record = message.to_dict()
    except ValueError:
        record = {"seqno": message.seqno, "producer": message.producer}
    record["payload_base64"] = base64.b64encode(message.data).decode("ascii")
    letter = {**context, "topic": topic, "seqno": message.seqno, "reason": reason,
              "message": record}
    return letter if fmt is Format.JSON else orjson.dumps(letter).decode()


async def send_dead_letters(producer: Producer, topic: str,
                            letters: Sequence[tuple[Message, str]], msg_id_prefix: str,
                            context: Mapping[str, str] | None = None) -> None:
    """Produce ``letters`` (messages of ``topic`` and why they are dead) to the dead letter
    topic of ``producer``; msg_ids ``<msg_id_prefix><seqno>`` make a retry store them once."""
    context = dict(context or {})
    ids = [f"{msg_id_prefix}{m.seqno}" for m, _ in letters]
    if producer.format is not Format.BYTES:  # a topic made before dead letters were bytes
        await producer.produce_many([_record(topic, m, why, context, producer.format)
                                     for m, why in letters], msg_ids=ids)
        return
    await asyncio.gather(*(
        producer.produce(m.data, headers=dead_letter_headers(topic, m, why, context),
                         key=m.key, msg_id=msg_id)
        for (m, why), msg_id in zip(letters, ids, strict=True)))


__all__ = ["OPTIONS", "REASON_CHARS", "dead_letter_headers", "send_dead_letters"]
