"""``lakeport topics consume``: print a topic's messages until its end, a timeout or Ctrl-C."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from lakeport.cli.common import FormatChoice, json_line, stderr, stop_on_signals, write_out
from lakeport.errors import NotFound

if TYPE_CHECKING:
    from lakeport.streams.base import Engine
    from lakeport.streams.types import Filters, Message, Mode, Position

# How often a wait for a topic to be created checks for a stop.
_POLL_SECONDS = 0.2
# The key of the line ``--payload-only`` prints for a payload that does not decode.
UNDECODABLE = "lakeport_undecodable"


@dataclass(frozen=True)
class ConsumeRequest:
    """Everything ``consume`` was asked to do, validated before the engine is opened."""

    url: str | None
    topic: str
    consumer: str
    mode: Mode
    position: Position
    filters: Filters
    follow: bool
    timeout: float | None
    limit: int | None
    ack: bool
    payload_only: bool = False
    ephemeral: bool = False


def render(message: Message, payload_only: bool) -> bytes:
    """One output line: the message as a JSON record, or with ``payload_only`` its payload
    (JSON as ``json.dumps`` writes it, text and bytes as they are).

    A payload that does not decode by its topic's format (another client can store any bytes,
    e.g. on NATS) is printed all the same: the record gets ``payload_base64`` (the stored
    bytes) and ``error`` in place of ``payload``; with ``payload_only`` the line is
    ``{"lakeport_undecodable": "<base64>", "error": "..."}``.
    """
    try:
        if not payload_only:
            return json_line(message.to_dict())
        if message.format == FormatChoice.JSON:  # Format.JSON, without importing the engines
            return json_line(orjson.loads(message.data))
        return message.data + b"\n"
    except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raw = base64.b64encode(message.data).decode("ascii")
        reason = f"payload is not valid {message.format.value}: {exc}"
        if payload_only:
            return json_line({UNDECODABLE: raw, "error": reason})
        from lakeport.streams.types import Format

        record = message._replace(data=b"null", format=Format.JSON).to_dict()
        del record["payload"]
        return json_line({**record, "payload_base64": raw, "error": reason})


async def _wait_for_topic(engine: Engine, topic: str, stop: asyncio.Event) -> bool:
    """Wait until ``topic`` exists; False if stopped first."""
    try:
        await engine.topic_info(topic)
        return True
    except NotFound:
        stderr.print(f"waiting for topic {topic!r} to be created (Ctrl-C to stop)")
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _POLL_SECONDS)
        with contextlib.suppress(NotFound):
            await engine.topic_info(topic)
            return True
    return False


async def consume_to_stdout(request: ConsumeRequest) -> int:
    """Print messages; return how many were printed.

    Stops at the topic's end (unless following), after ``limit`` messages, when nothing
    arrived for ``timeout`` seconds, or on SIGINT/SIGTERM. Printed messages are acked
    after they were written, when ``ack`` is set.
    """
    from lakeport.streams import open_engine
    from lakeport.streams.flow import batches

    printed = 0
    with stop_on_signals() as stop:
        async with open_engine(request.url) as engine:
            if request.follow and not await _wait_for_topic(engine, request.topic, stop):
                return printed
            consumer = engine.consumer(
                request.consumer, request.topic, mode=request.mode, position=request.position,
                filters=request.filters, follow=request.follow, on_no_exists="fail",
                ephemeral=request.ephemeral,
            )
            async with consumer:
                async for batch in batches(consumer, stop, idle_timeout=request.timeout):
                    if request.limit is not None:
                        batch = batch[: request.limit - printed]
                    write_out(b"".join(render(message, request.payload_only)
                                       for message in batch))
                    printed += len(batch)
                    if request.ack:
                        await consumer.ack(batch[-1].seqno)
                    if request.limit is not None and printed >= request.limit:
                        break
    return printed
