"""The oldest unacknowledged message's time per consumer, for ``topics show`` and status.

Every engine answers it the same way: the consumer's first unacked message is the one after
its ack floor (or the topic's first, when retention dropped older ones); its time is read
with a short non-following ephemeral consumer at that seqno. That costs a read per consumer,
so ``topic_info`` leaves it out and only what shows it asks for it: ``topics show``, the
server's topic route (which answers the remote engine) and a forwarder's status.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import TYPE_CHECKING

from lakeport.errors import LakeportError
from lakeport.streams.types import Position, TopicInfo

if TYPE_CHECKING:
    from lakeport.streams.base import Engine

PEEK_TIMEOUT = 2.0  # seconds to wait for the message; none in time leaves the time unknown


async def message_time(engine: Engine, topic: str, seqno: int) -> int | None:
    """The time (ns) of the message ``seqno`` of ``topic``, or of the first one after it."""
    async with engine.consumer(f"peek-{seqno}", topic, position=Position.at_seqno(seqno),
                               ephemeral=True, follow=False) as peek:
        with contextlib.suppress(TimeoutError, LakeportError):
            return (await peek.recv(timeout=PEEK_TIMEOUT)).timestamp_ns
    return None


async def with_oldest_unacked(engine: Engine, info: TopicInfo,
                              names: Collection[str] | None = None) -> TopicInfo:
    """Fill ``oldest_unacked_ns`` of the consumers of ``info`` (those in ``names``, default
    all) that have a lag and no time yet (a remote engine's server gave it already)."""
    for consumer in info.consumers:
        if consumer.lag > 0 and consumer.oldest_unacked_ns is None and (
                names is None or consumer.name in names):
            seqno = max(consumer.acked + 1, info.first_seqno)
            consumer.oldest_unacked_ns = await message_time(engine, info.name, seqno)
    return info


__all__ = ["message_time", "with_oldest_unacked"]
