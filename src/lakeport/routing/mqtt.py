"""MQTT bridges (``mqtt://``, ``mqtts://``; MQTT 3.1.1 and 5): ingest into a lakeport topic,
egress out of one. What they do is told in :mod:`lakeport.routing`; this is how.

paho-mqtt speaks the session protocol (CONNECT with its login and MQTT 5 properties, CONNACK
and its reason codes, SUBSCRIBE, keepalive pings, DISCONNECT) over an asyncio connection (TLS
by :mod:`ssl`) handed to it as its socket. The message path is written in
:mod:`lakeport.routing.mqtt_session`: incoming PUBLISH packets are decoded from whole buffers
as they arrive and acknowledged with one write per stored batch, and egress PUBLISH packets
and their PUBACKs are tracked there, within the broker's Receive Maximum. paho's own path
takes about 18 µs to read a message on the development machine (several one-byte reads and a
callback each) and, for QoS 1 publishes, walks every message in flight on each PUBACK:
ceilings below the bridge's targets. This module holds the bridge itself: its URL and TLS
options, the login and subscription, and the ingest and egress loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from lakeport.errors import Invalid, LakeportError, Terminal, Unauthorized, Unavailable
from lakeport.routing.bridge import Bridge, BridgeConfig, BridgeStatus
from lakeport.routing.bridge_payloads import (
    LevelTemplate,
    TopicTemplate,
    Unreadable,
    message_fields,
)
from lakeport.routing.mqtt_session import (
    MqttConnection,
    PacketWire,
    SessionPublisher,
    WireClient,
    WireSocket,
    first_of,
)

if TYPE_CHECKING:
    from lakeport.streams import Engine, Message, Producer

_PROTOCOLS = {"3.1.1": paho.MQTTv311, "311": paho.MQTTv311, "4": paho.MQTTv311,
              "5": paho.MQTTv5}
_LOGIN = {134, 135}  # bad user name or password, not authorized (3.1.1 codes 4, 5 map here)
_BUSY = {136, 137, 151, 159}  # server unavailable, busy, quota exceeded, rate exceeded


def _validate_filter(text: str) -> str:
    levels = text.split("/")
    for index, level in enumerate(levels):
        if ("#" in level and (level != "#" or index != len(levels) - 1)) or \
                ("+" in level and level != "+"):
            raise Invalid(f"bad topic filter {text!r}: + stands alone in a level, # alone in "
                          "the last one")
    if not text:
        raise Invalid("a topic filter must not be empty")
    return text


class MqttBridge(Bridge):
    """An MQTT ingest or egress bridge; see :mod:`lakeport.routing`."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__(config)
        parts = urlsplit(config.url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise Invalid(f"the MQTT bridge takes mqtt:// or mqtts:// URLs, not {parts.scheme}://")
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname or ""
        self.port = parts.port or (8883 if self.tls else 1883)
        self.where = f"{self.host}:{self.port}"
        query = dict(parse_qsl(parts.query))
        unknown = set(query) - {"protocol"}
        if unknown:
            raise Invalid(f"unknown broker URL option {sorted(unknown)[0]!r}: use protocol=5")
        protocol = config.protocol or query.get("protocol", "3.1.1")
        if protocol not in _PROTOCOLS:
            raise Invalid(f"bad MQTT protocol {protocol!r}: use 3.1.1 or 5")
        self.protocol = _PROTOCOLS[protocol]
        self.v5 = self.protocol == paho.MQTTv5
        self.username = config.username or (unquote(parts.username) if parts.username else None)
        self._password = config.password.get_secret_value() if config.password else (
            unquote(parts.password) if parts.password else None)
        self.client_id = config.client_id or f"lakeport-{config.bridge_name}"
        self.ssl = self._ssl_context() if self.tls else None
        for flt in config.subscribe:
            _validate_filter(flt)
        self.levels = LevelTemplate(config.fields) if config.fields else None
        self.template = TopicTemplate(config.publish) if config.publish else None

    # -- connecting --------------------------------------------------------------------
    async def _connect(self, persistent: bool, client_id: str | None = None) -> MqttConnection:
        cfg, loop = self.config, asyncio.get_running_loop()
        if not self.tls and (cfg.ca_file or cfg.cert_file):
            raise Invalid("TLS options need an mqtts:// URL")
        password = self._secret(self._password)
        wire = PacketWire(self.status, cfg.max_pending, self.v5)
        try:
            await asyncio.wait_for(loop.create_connection(
                lambda: wire, self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl else None), cfg.connect_timeout)
        except ssl.SSLCertVerificationError as exc:
            raise Terminal(f"TLS: the certificate of the MQTT broker {self.where} did not "
                           f"verify ({exc.verify_message or exc.reason}): give the CA that "
                           "signed it with --ca-file") from None
        except ssl.SSLError as exc:
            raise Terminal(f"TLS handshake with the MQTT broker {self.where} failed: "
                           f"{exc.reason or exc}") from None
        except TimeoutError:
            raise Unavailable(f"cannot reach the MQTT broker {self.where}: no answer within "
                              f"{cfg.connect_timeout:g}s") from None
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise Unavailable(f"cannot reach the MQTT broker {self.where}: {reason}") from None
        client = WireClient(paho.CallbackAPIVersion.VERSION2, client_id=client_id or self.client_id,
                         clean_session=None if self.v5 else not persistent,
                         protocol=self.protocol, manual_ack=True, reconnect_on_failure=False)
        client.lakeport_socket = WireSocket(wire)
        wire.client = client
        if self.username is not None:
            client.username_pw_set(self.username, password)
        extra: dict[str, Any] = {}
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = cfg.session_expiry if persistent else 0
            extra = {"clean_start": not persistent, "properties": props}
        connack: asyncio.Future[Any] = loop.create_future()
        client.on_connect = lambda c, u, flags, reason, p: (
            None if connack.done() else connack.set_result((reason, p)))
        client.on_disconnect = lambda c, u, flags, reason, p: self._disconnected(wire, reason)
        try:
            client.connect_async(self.host, self.port, cfg.keepalive, **extra)
            client.reconnect()
            await first_of(connack, self._closed(wire), cfg.connect_timeout)
            if not connack.done():
                raise Unavailable(f"the MQTT broker {self.where} did not answer the login"
                                  + (f": {wire.error}" if wire.error else ""))
            reason, props = connack.result()
            if reason.is_failure:
                raise self._refused(reason)
            if cfg.direction == "ingest":
                await self._subscribe(client, wire)
            window = getattr(props, "ReceiveMaximum", None) or 65535
            return MqttConnection(wire, client, self.v5, min(window, 65535 // 2, cfg.batch_size))
        except BaseException:
            wire.close()
            raise

    def _disconnected(self, wire: PacketWire, reason: Any) -> None:
        if getattr(reason, "is_failure", False) and wire.error is None:
            wire.error = f"the MQTT broker {self.where} disconnected: {reason.getName()}"

    async def _closed(self, wire: PacketWire) -> None:
        while not wire.closed:
            await wire.ready.wait()
            wire.ready.clear()

    def _refused(self, reason: Any) -> LakeportError:
        name = reason.getName()
        if reason.value in _LOGIN:
            who = f" of user {self.username!r}" if self.username else ""
            return Unauthorized(f"the MQTT broker {self.where} refused the login{who}: "
                                f"{name.lower()}")
        if reason.value in _BUSY:
            return Unavailable(f"the MQTT broker {self.where} is not available: {name}")
        return Terminal(f"the MQTT broker {self.where} refused the connection: {name}")

    async def _subscribe(self, client: WireClient, wire: PacketWire) -> None:
        cfg, loop = self.config, asyncio.get_running_loop()
        suback: asyncio.Future[Any] = loop.create_future()
        client.on_subscribe = lambda c, u, mid, codes, p: (
            None if suback.done() else suback.set_result(codes))
        if self.v5:  # retained messages only for a new subscription, not on every reconnect
            options = SubscribeOptions(qos=cfg.qos, retainHandling=1)
            client.subscribe([(f, options) for f in cfg.subscribe])
        else:
            client.subscribe([(f, cfg.qos) for f in cfg.subscribe])
        await first_of(suback, self._closed(wire), cfg.connect_timeout)
        if not suback.done():
            raise Unavailable(f"the MQTT broker {self.where} did not answer the subscription")
        for flt, code in zip(cfg.subscribe, suback.result(), strict=False):
            if code.is_failure:
                raise Terminal(f"the MQTT broker {self.where} refused the subscription to "
                               f"{flt!r}: {code.getName()}")

    async def healthcheck(self) -> None:
        conn = await self._connect(False, f"{self.client_id}-check")
        await conn.close()

    async def publisher(self) -> SessionPublisher:
        """Publishes at ``qos`` on a clean session of its own (client id
        ``<client id>-pub``), waiting for every PUBACK at QoS 1."""
        conn = await self._connect(False, f"{self.client_id}-pub")
        return SessionPublisher(conn, self.config.qos, max(30.0, self.config.keepalive))

    # -- running -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None,
                  engine: Engine | None = None) -> BridgeStatus:
        stop = stop or asyncio.Event()
        if engine is None:
            from lakeport.streams import open_engine

            async with open_engine(self.config.streams_url) as opened:
                return await self.run(stop, opened)
        try:
            if self.config.direction == "ingest":
                await self._ingest(engine, stop)
            else:
                await self._egress(engine, stop)
        except BaseException as exc:
            self.status.state = "failed"
            if isinstance(exc, LakeportError):
                self.status.last_error = str(exc)
            raise
        finally:
            if self._dead is not None:
                await self._dead.close()
                self._dead = None
        self.status.state = "stopped"
        return self.status

    # -- ingest ------------------------------------------------------------------------
    async def _ingest(self, engine: Engine, stop: asyncio.Event) -> None:
        from lakeport.streams import Format

        cfg = self.config
        topic = cfg.to_topic or ""
        async with engine.producer(cfg.bridge_name, topic, on_no_exists="create") as producer:
            if producer.format is not Format.JSON:
                raise Invalid(f"topic {topic!r} is a {producer.format.value} topic: the "
                              "bridge produces JSON readings to a json topic")
            self._high = (await engine.topic_info(topic)).last_seqno
            # QoS 1: a persistent session, so the broker keeps what is not acked yet
            await self._reconnecting(stop, lambda: self._connect(cfg.qos == 1),
                                     lambda conn: self._pump(conn, engine, producer, stop))

    async def _pump(self, conn: MqttConnection, engine: Engine, producer: Producer,
                    stop: asyncio.Event) -> None:
        wire = conn.wire
        while not stop.is_set() and conn.alive:
            if not wire.pending:
                wire.ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wire.ready.wait(), 0.2)
                continue
            items = wire.take(self.config.batch_size)
            acks = await self._store(items, engine, producer)
            if conn.alive:  # after a reconnect the broker sends them again, marked DUP
                conn.puback(acks)

    async def _store(self, items: list[tuple[str, bytes, int, int, bool, bytes | None]],
                     engine: Engine, producer: Producer) -> list[int]:
        """Produce ``items`` (dead letters for the unreadable); the packet ids to ack."""
        records: list[dict[str, Any]] = []
        ids: list[str | None] = []
        dups: list[bool] = []
        dead: list[tuple[bytes, str | None, dict[str, str]]] = []
        acks: list[int] = []
        batch_ids: set[str] = set()
        for topic, payload, qos, mid, dup, props in items:
            base, exact = self._msg_id(topic, payload, mid, props) if qos else (None, False)
            if qos:
                acks.append(mid)
                if base in batch_ids:  # the publisher's msg_id twice in one batch
                    self.status.duplicates += 1
                    continue
                batch_ids.add(base)
            try:
                read = self._readings(topic, payload)
            except Unreadable as exc:
                dead.append((payload, base, {"mqtt-topic": topic,
                                             "dead-letter-reason": str(exc)}))
                continue
            if len(read) == 1:
                records.append(read[0])
                ids.append(base)
                dups.append(dup or exact)
            else:
                records.extend(read)
                ids.extend(f"{base}.{i}" if base else None for i in range(len(read)))
                dups.extend([dup or exact] * len(read))
        if records:
            await self._produce(producer, records, ids, dups)
        if dead:
            await self._dead_letters(engine, dead)
        return acks

    def _msg_id(self, topic: str, payload: bytes, mid: int, props: bytes | None
                ) -> tuple[str, bool]:
        """The msg_id of a QoS 1 message, and whether it names the message for sure (the
        publisher's own) rather than its delivery."""
        if props is not None:
            found = Properties(PacketTypes.PUBLISH)
            with contextlib.suppress(Exception):
                found.unpack(props)
                for key, value in getattr(found, "UserProperty", ()):
                    if key == "msg_id":
                        return f"mqtt:{value}", True
        digest = hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=6).hexdigest()
        return f"mqtt:{self.client_id}:{mid}:{digest}", False

    # -- egress ------------------------------------------------------------------------
    async def _egress(self, engine: Engine, stop: asyncio.Event) -> None:

        cfg = self.config
        name, topic = cfg.bridge_name, cfg.from_topic or ""

        async def work(conn: MqttConnection) -> None:
            consumer = engine.consumer(name, topic, position="unread", on_no_exists="create")
            async with consumer:
                while not stop.is_set() and conn.alive:
                    try:
                        batch = await consumer.recv_batch(cfg.batch_size, timeout=0.2)
                    except TimeoutError:
                        continue
                    if not await self._send(conn, batch, engine, topic):
                        return  # not acked: read again after the reconnect
                    await consumer.ack(batch[-1].seqno)

        await self._reconnecting(stop, lambda: self._connect(False), work)

    async def _send(self, conn: MqttConnection, batch: list[Message], engine: Engine,
                    topic: str) -> bool:
        """Publish ``batch``; True once the broker confirmed it (and the unroutable are dead
        letters), False if the connection ended first."""
        from lakeport.streams import dead_letters

        assert self.template is not None
        self.status.messages_in += len(batch)
        letters: list[tuple[Message, str]] = []
        qos = self.config.qos
        for message in batch:
            try:
                fields = message_fields(message) if self.template.fields else {}
                if not await conn.publish(self.template.render(fields), message.data, qos,
                                          message):
                    return False
            except Unreadable as exc:
                letters.append((message, str(exc)))
        if not await conn.all_confirmed(timeout=max(30.0, self.config.keepalive)):
            return False
        letters.extend(conn.refused)
        conn.refused.clear()
        if letters:
            dead = await self._dead_producer(engine)
            await dead_letters.send_dead_letters(dead, topic, letters, f"{dead.name}:",
                                                 {"bridge": self.config.bridge_name})
            self.status.dead_letters += len(letters)
        self.status.messages_out += len(batch) - len(letters)
        return True


__all__ = ["MqttBridge"]
