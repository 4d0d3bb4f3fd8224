"""The MQTT connection beneath :class:`~lakeport.routing.mqtt.MqttBridge`: packet framing and
the session a bridge runs over.

:class:`PacketWire` is the asyncio protocol that cuts the broker's byte stream into packets,
decoding incoming PUBLISH packets itself into ``pending`` and handing every other packet to
paho-mqtt through :class:`WireSocket`, the socket paho is given (:class:`WireClient`).
:class:`MqttConnection` is one connected, logged-in session on top of it: PUBACKs for stored
ingest batches in one write, and egress PUBLISH packets tracked to their PUBACKs within the
broker's Receive Maximum. Also the MQTT variable byte integer (:func:`read_varint`,
:func:`varint_bytes`) and :func:`first_of`, the wait for a broker's answer that gives up when
the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from lakeport.errors import Transient
from lakeport.routing.bridge import BridgeStatus
from lakeport.routing.bridge_payloads import Unreadable


def read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    value, mult = 0, 1
    for _ in range(4):
        if pos >= len(data):
            return None
        byte = data[pos]
        pos += 1
        value += (byte & 127) * mult
        if byte < 128:
            return value, pos
        mult *= 128
    raise ConnectionError("malformed MQTT packet length")


class PacketWire(asyncio.Protocol):
    """The connection: PUBLISH packets to ``pending``, other packets to paho."""

    def __init__(self, status: BridgeStatus, max_pending: int, v5: bool) -> None:
        self.status, self.max_pending, self.v5 = status, max_pending, v5
        self.transport: asyncio.Transport | None = None
        self.client: paho.Client | None = None
        self.on_puback: Callable[[int, int], None] | None = None
        self.control = bytearray()  # whole packets paho reads through WireSocket.recv
        self.pending: list[tuple[str, bytes, int, int, bool, bytes | None]] = []
        self.ready = asyncio.Event()
        self.closed = False
        self.error: str | None = None
        self._rest = bytearray()  # the start of a packet not received whole yet
        self._need = 0  # its length, once known
        self._out: list[bytes] = []
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.error is None:
            self.error = f"connection lost: {exc}" if exc else "the broker closed the connection"
        self.ready.set()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.loop_read()  # paho sees the end of its socket

    def data_received(self, data: bytes) -> None:
        if self._rest:
            self._rest += data
            if len(self._rest) < self._need:
                return  # a large packet: wait for all of it
            data, self._rest = bytes(self._rest), bytearray()
        try:
            used = self._parse(data)
        except (ConnectionError, UnicodeDecodeError, IndexError) as exc:
            self.fail(f"bad packet from the broker: {exc}")
            return
        if used < len(data):
            self._rest = bytearray(data[used:])
        if self.client is not None:
            self.client._last_msg_in = time.monotonic()  # the PUBLISHes read here count too
            while self.control:
                before = len(self.control)
                if self.client.loop_read() or len(self.control) == before:
                    break
        if self.pending:
            self.ready.set()
            if len(self.pending) >= self.max_pending and not self._paused and self.transport:
                self.transport.pause_reading()
                self._paused = True

    def _parse(self, data: bytes) -> int:
        pos, end_all, pending, v5 = 0, len(data), self.pending, self.v5
        received, self._need = 0, 0
        while pos < end_all:
            if pos + 1 < end_all and data[pos + 1] < 128:  # the common short packet
                length, start = data[pos + 1], pos + 2
            else:
                header = read_varint(data, pos + 1)
                if header is None:
                    break
                length, start = header
            end = start + length
            if end > end_all:
                self._need = end - pos
                break
            kind = data[pos] >> 4
            if kind == 4 and self.on_puback is not None:  # PUBACK of an egress publish
                self.on_puback((data[start] << 8) | data[start + 1],
                               data[start + 2] if length > 2 else 0)
                pos = end
                continue
            if kind != 3:
                self.control += data[pos:end]
                pos = end
                continue
            flags = data[pos] & 15
            qos = (flags >> 1) & 3
            if qos == 2:
                raise ConnectionError("QoS 2 delivery on a QoS 0/1 subscription")
            size = (data[start] << 8) | data[start + 1]
            at = start + 2 + size
            topic = data[start + 2:at].decode()
            mid = 0
            if qos:
                mid = (data[at] << 8) | data[at + 1]
                at += 2
            props = None
            if v5:
                plen = read_varint(data, at)
                if plen is None or plen[1] + plen[0] > end:
                    raise ConnectionError("malformed PUBLISH properties")
                if plen[0]:
                    props = data[at:plen[1] + plen[0]]
                at = plen[1] + plen[0]
            pending.append((topic, data[at:end], qos, mid, bool(flags & 8), props))
            received += 1
            pos = end
        self.status.messages_in += received
        return pos

    def take(self, count: int) -> list[tuple[str, bytes, int, int, bool, bytes | None]]:
        pending = self.pending
        if len(pending) <= count:
            self.pending = []
            items = pending
        else:
            items = pending[:count]
            del pending[:count]
        if self._paused and len(self.pending) < self.max_pending // 2 and self.transport:
            self.transport.resume_reading()
            self._paused = False
        return items

    def write(self, data: bytes) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self.flush)
        self._out.append(data)

    def flush(self) -> None:
        if self._out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def fail(self, reason: str) -> None:
        self.error = reason
        self.close()

    def close(self) -> None:
        self.flush()
        if self.transport is not None:
            self.transport.close()


class WireSocket:
    """What paho takes for its socket: reads ``wire.control``, writes to the wire."""

    def __init__(self, wire: PacketWire) -> None:
        self.wire = wire

    def recv(self, size: int) -> bytes:
        control = self.wire.control
        if not control:
            if self.wire.closed:
                return b""
            raise BlockingIOError
        out = bytes(control[:size])
        del control[:size]
        return out

    def send(self, data: bytes | bytearray) -> int:
        if self.wire.closed:
            raise ConnectionError("the connection is closed")
        self.wire.write(bytes(data))
        return len(data)

    def setblocking(self, flag: bool) -> None:
        pass

    def pending(self) -> int:
        return 0

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        self.wire.close()


class WireClient(paho.Client):
    lakeport_socket: WireSocket

    def _create_socket(self) -> Any:
        return self.lakeport_socket


class MqttConnection:
    """One connected, logged-in session. Egress publishes are written here too, at most
    ``window`` QoS 1 ones unacknowledged (the broker's Receive Maximum)."""

    def __init__(self, wire: PacketWire, client: WireClient, v5: bool, window: int) -> None:
        self.wire, self.client, self.v5, self.window = wire, client, v5, window
        self.outstanding: dict[int, Any] = {}  # packet id -> what was published
        self.refused: list[tuple[Any, str]] = []  # (what, why): MQTT 5 PUBACKs >= 0x80
        self.changed = asyncio.Event()
        self._mid = 0
        wire.on_puback = self._puback
        self._keepalive = asyncio.get_running_loop().create_task(self._tick())

    @property
    def alive(self) -> bool:
        return not self.wire.closed

    @property
    def error(self) -> str | None:
        return self.wire.error

    async def _tick(self) -> None:
        while not self.wire.closed:
            await asyncio.sleep(1.0)
            self.client.loop_misc()

    def puback(self, mids: list[int]) -> None:
        if mids and self.alive:
            self.wire.write(b"".join(bytes((0x40, 2, mid >> 8, mid & 255)) for mid in mids))

    async def publish(self, topic: str, data: bytes, qos: int, what: Any) -> bool:
        """Write a PUBLISH (waiting for room in the window); False if the connection ended."""
        name = topic.encode()
        if not name or len(name) > 65535 or b"\0" in name:
            raise Unreadable(f"not a valid MQTT topic: {topic[:100]!r}")
        while qos and len(self.outstanding) >= self.window and self.alive:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.2)
        if not self.alive:
            return False
        head = len(name).to_bytes(2, "big") + name
        if qos:
            mid = self._mid
            while True:
                mid = mid % 65535 + 1
                if mid not in self.outstanding:
                    break
            self._mid = mid
            self.outstanding[mid] = what
            head += mid.to_bytes(2, "big")
        if self.v5:
            head += b"\0"  # no properties
        self.wire.write(bytes((0x30 | qos << 1,)) + varint_bytes(len(head) + len(data)) + head)
        self.wire.write(data)
        return True

    def _puback(self, mid: int, code: int) -> None:
        what = self.outstanding.pop(mid, None)
        if what is not None and code >= 0x80:
            reason = ReasonCode(PacketTypes.PUBACK, identifier=code).getName()
            self.refused.append((what, f"the broker refused the message: {reason}"))
        self.changed.set()

    async def all_confirmed(self, timeout: float) -> bool:
        """Wait for the broker's PUBACK of every publish; False if the connection ended."""
        self.wire.flush()
        deadline = time.monotonic() + timeout
        while self.outstanding and self.alive and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.2)
        return not self.outstanding and self.alive

    async def close(self) -> None:
        self._keepalive.cancel()
        if self.alive:
            with contextlib.suppress(Exception):
                self.client.disconnect()
            self.wire.close()


class SessionPublisher:
    """A :class:`~lakeport.routing.bridge.Publisher` on one connection: PUBLISHes at ``qos``
    and, at QoS 1, waits for every PUBACK."""

    def __init__(self, connection: MqttConnection, qos: int, timeout: float) -> None:
        self.connection, self.qos, self.timeout = connection, qos, timeout

    async def publish(self, items: Sequence[tuple[str, bytes]]) -> list[tuple[int, str]]:
        conn = self.connection
        refused: list[tuple[int, str]] = []
        for index, (topic, body) in enumerate(items):
            try:
                sent = await conn.publish(topic, body, self.qos, index)
            except Unreadable as exc:
                refused.append((index, str(exc)))
                continue
            if not sent:
                raise Transient(conn.error or "the MQTT connection ended")
        if not await conn.all_confirmed(self.timeout):
            raise Transient(conn.error or "the broker did not confirm within "
                            f"{self.timeout:.0f}s")
        refused.extend(conn.refused)
        conn.refused.clear()
        return refused

    async def close(self) -> None:
        await self.connection.close()


def varint_bytes(value: int) -> bytes:
    """An MQTT variable byte integer."""
    out = bytearray()
    while True:
        value, byte = divmod(value, 128)
        out.append(byte | (128 if value else 0))
        if not value:
            return bytes(out)


async def first_of(future: asyncio.Future[Any], closed: Awaitable[None], timeout: float) -> None:
    """Wait for ``future``, at most ``timeout`` seconds or until the connection closed."""
    watcher = asyncio.ensure_future(closed)
    try:
        await asyncio.wait({future, watcher}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()


__all__ = ["MqttConnection", "PacketWire", "SessionPublisher", "WireClient", "WireSocket",
           "first_of", "read_varint", "varint_bytes"]
