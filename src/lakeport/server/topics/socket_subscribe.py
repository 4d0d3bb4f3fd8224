"""``WS /topics/subscribe?pattern=sensors.*.temperature``: the messages of every topic whose
name matches a pattern, pushed as they arrive.

A pattern is words split on ``.``: ``*`` is exactly one word, ``#`` zero or more, any other
word itself. Once the subscription stands the server sends ``{"ok": true, "pattern",
"position"}``; then one frame per message, ``{"topic", "seqno", "time", "key", "data"}``, from
every matching topic the user may read, including topics created (or shared with the user)
later: the topic list is looked at every :data:`POLL` seconds. A topic the user may not read
is never sent nor named. ``position=end`` (the default) delivers what is produced after the
first frame, ``position=earliest`` every stored message; a topic created later is read from
its first message either way. Each topic is read by an ephemeral consumer closed with the
socket, and the next message is read only once the last frame has left the server, so a slow
client slows its readers rather than filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from functools import lru_cache
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from lakeport.errors import Invalid, LakeportError, NotFound
from lakeport.server.topics.access import readable_topics
from lakeport.server.topics.socket_base import FrameSession
from lakeport.streams import Position
from lakeport.streams.types import Message
from lakeport.wire import payload_to_json

router = APIRouter(tags=["topics"])
log = logging.getLogger("lakeport.server")

POLL = 1.0
"""Seconds between two looks at the topic list."""
BLOCK = 100
"""Messages read from a topic at once at most (what a subscription holds per topic while
its client is slow)."""
_WORD = re.compile(r"[0-9A-Za-z+_=:@-]+|\*|#")
POSITIONS = ("end", "earliest")


class Pattern:
    """A topic name pattern: words split on ``.``; ``*`` one word, ``#`` zero or more."""

    def __init__(self, text: str) -> None:
        words = text.split(".")
        if not text or len(text) > 200 or not all(_WORD.fullmatch(w) for w in words):
            raise Invalid(f"bad pattern {text!r}: words of A-Z a-z 0-9 + _ = : @ - split on "
                          "'.', where * is one word and # zero or more words")
        collapsed: list[str] = []
        for word in words:
            if not (word == "#" and collapsed and collapsed[-1] == "#"):
                collapsed.append(word)
        self.text = text
        self.words = tuple(collapsed)

    def matches(self, topic: str) -> bool:
        return _match(self.words, tuple(topic.split(".")))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """Whether ``words`` fit ``pattern`` (dynamic programming over both word lists)."""
    # fits[j]: the pattern so far matches the first j words
    fits = [True] + [False] * len(words)
    for part in pattern:
        if part == "#":
            for j in range(1, len(fits)):
                fits[j] = fits[j] or fits[j - 1]
        else:
            fits = [False] + [fits[j - 1] and (part in ("*", words[j - 1]))
                              for j in range(1, len(fits))]
    return fits[-1]


def _frame(topic: str, message: Message) -> dict[str, Any]:
    return {"topic": topic, "seqno": message.seqno,
            "time": message.time.isoformat().replace("+00:00", "Z"), "key": message.key,
            "data": orjson.Fragment(payload_to_json(message.data, message.format))}


class Subscription(FrameSession):
    """One subscribing WebSocket: a reader per matching topic the user may read."""

    def __init__(self, websocket: WebSocket) -> None:
        super().__init__(websocket)
        self.store = websocket.app.state.store
        self.readers: dict[str, asyncio.Task[None]] = {}
        self.sent: dict[str, int] = {}
        """The last seqno sent of each topic (a reader started again goes on after it)."""
        self.existing: dict[str, int] = {}
        """The last seqno of each topic there was when the subscription started (the others
        are read from their beginning)."""
        self.token = uuid.uuid4().hex[:12]

    def options(self) -> tuple[Pattern, str]:
        query = self.ws.query_params
        pattern = Pattern(query.get("pattern", ""))
        position = query.get("position", "end")
        if position not in POSITIONS:
            raise Invalid(f"bad position {position!r}: use end or earliest")
        return pattern, position

    async def run(self) -> None:
        if not await self.authenticate():
            return
        try:
            self.pattern, self.position = self.options()
            self.existing = {info.name: info.last_seqno
                             for info in await self.engine.list_topics()}
        except LakeportError as exc:
            await self.fail(0, exc)
            await self.ws.close(1008)
            return
        await self.send({"ok": True, "pattern": self.pattern.text, "position": self.position})
        watcher = asyncio.create_task(self.watch())
        try:
            while (frame := await self.receive()) is not None:
                if frame.get("op") == "close":
                    await self.ws.close(1000)
                    break
                await self.fail(frame.get("id"), Invalid(
                    f"unknown op {frame.get('op')!r}: a subscription takes only close"))
        except WebSocketDisconnect:
            pass
        finally:
            for task in (watcher, *self.readers.values()):
                task.cancel()
            for task in (watcher, *self.readers.values()):
                with contextlib.suppress(BaseException):
                    await task

    async def watch(self) -> None:
        """Start a reader for each matching readable topic, stop those no longer readable."""
        while True:
            try:
                names = [info.name for info in await self.engine.list_topics()
                         if self.pattern.matches(info.name)]
                readable = await readable_topics(self.store, self.user, names) if names else {}
            except Exception:
                log.warning("subscription %r: listing topics failed", self.pattern.text,
                            exc_info=True)
            else:
                for name in names:
                    reader = self.readers.get(name)
                    if name in readable and (reader is None or reader.done()):
                        self.readers[name] = asyncio.create_task(self.read(name))
                    elif name not in readable and reader is not None:
                        reader.cancel()
                        del self.readers[name]
                for name in set(self.readers) - set(names):  # deleted
                    self.readers.pop(name).cancel()
                    self.forget(name)
            await asyncio.sleep(POLL)

    def forget(self, topic: str) -> None:
        """``topic`` was deleted: a topic of that name made later is read from its start."""
        self.sent.pop(topic, None)
        self.existing.pop(topic, None)

    def start(self, topic: str) -> Position:
        if topic in self.sent:
            return Position.at_seqno(self.sent[topic] + 1)
        if topic in self.existing and self.position == "end":
            return Position.at_seqno(self.existing[topic] + 1)
        return Position.beginning()

    async def read(self, topic: str) -> None:
        """Send ``topic``'s messages until cancelled or the topic is gone."""
        name = f"u{self.user.id}.subscribe.{self.token}"
        try:
            async with self.engine.consumer(name, topic, position=self.start(topic),
                                            ephemeral=True) as consumer:
                while True:
                    await self.writable()
                    try:
                        block = await consumer.recv_block(BLOCK, timeout=POLL * 30)
                    except TimeoutError:
                        continue
                    if not len(block):
                        continue
                    for message in block.messages():
                        await self.writable()
                        await self.send(_frame(topic, message))
                        self.sent[topic] = message.seqno
                    await consumer.ack(block.last_seqno)
        except NotFound:
            self.forget(topic)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("subscription reader of %r ended", topic, exc_info=True)


@router.websocket("/topics/subscribe")
async def subscribe(websocket: WebSocket) -> None:
    """Subscribe to topics by pattern: see docs/server/topics.md for the frames."""
    await websocket.accept()
    await Subscription(websocket).run()


__all__ = ["POLL", "Pattern", "Subscription", "router"]
