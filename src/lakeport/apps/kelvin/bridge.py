"""The stream endpoint a vendor-SDK app connects to, bridged to lakeport topics.

The bridge is a lakeport :class:`~lakeport.apps.App` under the app's own name: it reads the
app's subscriptions from ``unread`` (so a restart resumes where the last run acked),
follows ``app-config.<app>`` and writes the app's messages to the conventional topics. On
the app's TCP connection it sends the runtime manifest, then every message in topic order
as one JSON line; what the app writes goes to its topic, or to ``dead-letter.<app>`` with
the reason when lakeport has no place for it.

Delivery (the protocol has no acks): with ``ack_after=0`` a message is acked once written
to the app's socket; with ``ack_after=S`` only once the app has stayed connected for ``S``
seconds after receiving it. Unacked messages are sent again when the app reconnects, and
after a restart the topic delivers them again (same ``id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lakeport.apps.app import App
from lakeport.apps.dispatch import MessageStream
from lakeport.apps.kelvin.actions import action_topic, created_actions_topic, result_topic
from lakeport.apps.kelvin.runtime import RuntimeManifest
from lakeport.apps.kelvin.wire import (
    ActionRequest,
    ActionResult,
    Unmappable,
    from_vendor,
    message_id,
    to_vendor,
)
from lakeport.apps.messages import AppMessage, topic_name
from lakeport.errors import Invalid, LakeportError
from lakeport.streams import Consumer

logger = logging.getLogger("lakeport.apps.kelvin")
LINE_LIMIT = 2**22  # the vendor client's own read limit


@dataclass(frozen=True)
class DeliveryOptions:
    """``ack_after``: seconds the app must stay connected after receiving a message before
    it is acked (0: ack once written). ``max_in_flight``: unacked messages at most.
    ``start_delay``: seconds between the runtime manifest and the first message, for the
    app to register its streams (the vendor SDK drops messages that arrive before its
    ``stream_filter`` / ``@app.stream`` is in place)."""

    ack_after: float = 0.0
    max_in_flight: int = 10_000
    start_delay: float = 1.0


@dataclass
class _Entry:
    message: AppMessage
    line: bytes | None  # None: not for this app (acked without being sent)
    due: float = 0.0


class KelvinBridge:
    """Serve the vendor stream protocol for one app (one connection at a time)."""

    def __init__(self, runtime: RuntimeManifest, *, url: str | None = None,
                 delivery: DeliveryOptions | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.runtime = runtime
        self.delivery = delivery or DeliveryOptions()
        if self.delivery.ack_after < 0 or self.delivery.max_in_flight < 1:
            raise Invalid("ack_after must be 0 or more and max_in_flight 1 or more")
        self.host, self.port = host, port
        manifest = runtime.manifest
        self.app = App(manifest.name, url=url, app_dir=manifest.folder,
                              configuration=runtime.configuration, handle_signals=False)
        self.app.on_app_configuration = self._on_configuration
        self.sent_to_app = 0
        self.received_from_app = 0
        self.dead_lettered = 0
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._write_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._pending: deque[_Entry] = deque()
        self._room = asyncio.Event()
        self._wake_acker = asyncio.Event()
        self._stream: MessageStream | None = None
        self._actions: Consumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def name(self) -> str:
        return self.app.name

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        """Connect to the topics, listen; return the ``(host, port)`` the app connects to."""
        await self.app.connect()
        try:
            engine = self.app.engine
            for topic in (action_topic(self.name), result_topic(self.name),
                          created_actions_topic()):
                await engine.create_topic(topic, exist_ok=True)
            self._actions = engine.consumer(  # only actions sent while it runs
                f"{self.name}.{os.getpid()}-{id(self):x}", action_topic(self.name),
                position="end", ephemeral=True)
            await self._actions.open()
            self._server = await asyncio.start_server(self._on_client, self.host, self.port,
                                                      limit=LINE_LIMIT)
        except BaseException:
            await self.app.disconnect()
            raise
        host, port = self._server.sockets[0].getsockname()[:2]
        if self.app.subscriptions:
            self._stream = self.app.stream_filter(None, auto_ack=False)
            self._tasks.append(asyncio.create_task(self._feed(self._stream), name="feed app"))
            self._tasks.append(asyncio.create_task(self._ack(self._stream), name="ack"))
        self._tasks.append(asyncio.create_task(self._follow_actions(self._actions),
                                               name="custom actions"))
        for task in self._tasks:
            task.add_done_callback(self._report_end)
        logger.info("kelvin stream for %s at %s:%d (%d assets%s)", self.name, host, port,
                    len(self.runtime.assets), ", open" if self.runtime.open_assets else "")
        return host, port

    def _report_end(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: %s stopped with an error", self.name, task.get_name(),
                         exc_info=task.exception())

    async def stop(self) -> None:
        """Stop feeding, ack what may be acked, close the connection and the topics."""
        self.app.stop()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await self._ack_due(self._stream)
        if self._writer is not None:
            self._writer.close()
        if self._actions is not None:
            with contextlib.suppress(Exception):
                await self._actions.close()
        await self.app.disconnect()
        logger.info("kelvin stream for %s stopped: %d messages to the app, %d from it, %d "
                    "dead-lettered", self.name, self.sent_to_app, self.received_from_app,
                    self.dead_lettered)

    # -- the app's connection ----------------------------------------------------------------
    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            logger.warning("%s: a second connection to the stream refused (one app at a time)",
                           self.name)
            writer.close()
            return
        self._writer = writer
        logger.info("%s connected to the stream", self.name)
        reading = asyncio.create_task(self._read_app(reader), name="read app")
        try:
            await self._send(self._encode(self.runtime.message()))
            await asyncio.wait({reading}, timeout=self.delivery.start_delay)
            if not reading.done():
                async with self._write_lock:
                    for entry in self._pending:  # not acked yet: the app gets them again
                        if entry.line is not None:
                            await self._write_raw(entry.line)
                            entry.due = self._now() + self.delivery.ack_after
                self._connected.set()
                await reading
        except (ConnectionError, OSError):
            pass
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            self._connected.clear()
            self._writer = None
            writer.close()
            logger.info("%s disconnected from the stream", self.name)

    async def _write_raw(self, line: bytes) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise ConnectionError("the app is not connected")
        writer.write(line)
        await writer.drain()

    async def _send(self, line: bytes) -> None:
        async with self._write_lock:
            await self._write_raw(line)

    @staticmethod
    def _encode(message: dict[str, Any]) -> bytes:
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _send_manifest(self) -> None:
        if self._connected.is_set():
            with contextlib.suppress(ConnectionError, OSError):
                await self._send(self._encode(self.runtime.message()))

    async def _on_configuration(self, configuration: dict[str, Any]) -> None:
        self.runtime.configuration = dict(configuration)
        logger.info("%s: configuration update passed on to the app", self.name)
        await self._send_manifest()

    # -- topics → app ------------------------------------------------------------------------
    async def _feed(self, stream: MessageStream) -> None:
        control_as_data = self.runtime.control_as_data()
        async for message in stream:
            admitted = self.runtime.admit(message.asset)
            if admitted is False:
                await self._keep(_Entry(message, None))
                continue
            if admitted is None:
                logger.info("%s: asset %s added to the runtime manifest", self.name,
                            message.asset)
                await self._send_manifest()
            ident = message_id(topic_name(message.topic), message.seqno)
            try:
                line = self._encode(to_vendor(message, ident, control_as_data=control_as_data))
            except (LakeportError, TypeError, ValueError) as exc:
                await self._dead_letter(message.to_payload(), f"cannot send to the app: {exc}")
                await self._keep(_Entry(message, None))
                continue
            await self._deliver(_Entry(message, line))

    async def _deliver(self, entry: _Entry) -> None:
        assert entry.line is not None
        while True:
            await self._wait_for_room()
            await self._connected.wait()
            try:
                await self._send(entry.line)
            except (ConnectionError, OSError):
                self._connected.clear()
                continue
            self.sent_to_app += 1
            await self._keep(entry, due=self._now() + self.delivery.ack_after)
            return

    async def _wait_for_room(self) -> None:
        while len(self._pending) >= self.delivery.max_in_flight:
            self._room.clear()
            self._wake_acker.set()
            await self._room.wait()

    async def _keep(self, entry: _Entry, due: float = 0.0) -> None:
        entry.due = due
        self._pending.append(entry)
        self._wake_acker.set()

    async def _ack(self, stream: MessageStream) -> None:
        interval = min(max(self.delivery.ack_after / 4, 0.05), 1.0)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_acker.wait(), interval)
            self._wake_acker.clear()
            try:
                await self._ack_due(stream)
            except LakeportError as exc:
                logger.warning("%s: acking failed (%s): retrying", self.name, exc)

    async def _ack_due(self, stream: MessageStream) -> None:
        """Ack the oldest pending messages whose time came (in ack-after mode: only while
        the app is connected, since its leaving may have been a crash)."""
        if self.delivery.ack_after > 0 and not self._connected.is_set():
            due: list[_Entry] = []
            for entry in self._pending:
                if entry.line is not None:
                    break
                due.append(entry)
        else:
            now = self._now()
            due = []
            for entry in self._pending:
                if entry.due > now:
                    break
                due.append(entry)
        if not due:
            return
        await stream.ack(due[-1].message)
        for _ in due:
            self._pending.popleft()
        self._room.set()

    # -- app → topics ------------------------------------------------------------------------
    async def _read_app(self, reader: asyncio.StreamReader) -> None:
        units = self.runtime.output_units()
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # longer than the limit: the stream cannot be resynchronised
                await self._dead_letter(None, f"a line longer than {LINE_LIMIT} bytes: "
                                        "connection closed")
                return
            if not line:
                return
            self.received_from_app += 1
            text = line.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                await self._dead_letter(text, f"not JSON: {exc}")
                continue
            try:
                converted = from_vendor(parsed, units=units)
            except (Unmappable, LakeportError) as exc:
                await self._dead_letter(parsed, str(exc))
                continue
            except Exception as exc:  # a shape no check foresaw: the stream goes on
                await self._dead_letter(parsed, f"{type(exc).__name__}: {exc}")
                continue
            await self._route(converted, parsed)

    async def _route(self, converted: AppMessage | ActionRequest | ActionResult,
                     original: Any) -> None:
        try:
            if isinstance(converted, AppMessage):
                await self.app.publish(converted)
            elif isinstance(converted, ActionResult):
                await self.app.produce(result_topic(self.name), converted.to_record())
            else:
                await self.app.produce(created_actions_topic(),
                                       {**converted.to_record(), "app": self.name})
        except Exception as exc:
            logger.exception("%s: could not write the app's message", self.name)
            await self._dead_letter(original, f"could not write it: {exc}")

    async def _dead_letter(self, payload: Any, reason: str) -> None:
        self.dead_lettered += 1
        logger.warning("%s: message sent to the dead-letter topic: %s", self.name, reason)
        try:
            await self.app.dead_letter({"payload": payload, "source": "kelvin stream",
                                        "error": reason})
        except Exception:
            logger.exception("%s: cannot write to the dead-letter topic", self.name)

    # -- custom actions ----------------------------------------------------------------------
    async def _follow_actions(self, consumer: Consumer) -> None:
        while True:
            try:
                raw = await consumer.recv()
            except LakeportError as exc:
                logger.error("%s: reading custom actions failed: %s", self.name, exc)
                await asyncio.sleep(1.0)
                continue
            try:
                request = ActionRequest.from_record(raw.payload)
            except (LakeportError, ValueError) as exc:
                await self._dead_letter(None, f"custom action seqno {raw.seqno}: {exc}")
            else:
                if request.expiration < datetime.now(UTC):
                    await self._answer(request, "the action expired before it reached the app")
                else:
                    await self._pass_action(request)
            with contextlib.suppress(LakeportError):
                await consumer.ack(raw.seqno)

    async def _pass_action(self, request: ActionRequest) -> None:
        try:
            await self._send(self._encode(request.to_vendor()))
        except (ConnectionError, OSError):
            await self._answer(request, f"{self.name} is not connected to its stream")

    async def _answer(self, request: ActionRequest, reason: str) -> None:
        """A failure result for an action the app cannot get."""
        result = ActionResult(request.id, False, reason, resource=request.resource)
        try:
            await self.app.produce(result_topic(self.name), result.to_record())
        except LakeportError as exc:
            logger.error("%s: cannot answer custom action %s: %s", self.name, request.id, exc)
