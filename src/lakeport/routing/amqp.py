"""AMQP 0-9-1 bridges (``amqp://``, ``amqps://``; RabbitMQ and the like): ingest into a lakeport
topic, egress out of one. What they do is told in :mod:`lakeport.routing`; this is how.

aio-pika speaks the protocol. Ingest reads a durable queue (bound to ``exchange`` with the
``subscribe`` binding keys) with manual acks and ``prefetch`` deliveries in flight, stores what
came as one batch and acks the broker with one ``multiple`` ack for the batch's last delivery
once the produce is durable. Egress publishes persistent messages on a channel with publisher
confirms, a batch at once, and acks the lakeport topic once every one is confirmed. Messages
are published ``mandatory``: one that no queue takes is returned by the broker and becomes a
dead letter rather than vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq.exceptions as amqp_errors
from aio_pika.abc import AbstractExchange
from aio_pika.abc import AbstractIncomingMessage as Delivery

from lakeport.errors import Invalid, LakeportError, Terminal, Unauthorized, Unavailable
from lakeport.routing.amqp_publish import AmqpConnection, AmqpPublisher
from lakeport.routing.bridge import Bridge, BridgeConfig, BridgeStatus
from lakeport.routing.bridge_payloads import (
    LevelTemplate,
    TopicTemplate,
    Unreadable,
    message_fields,
)

if TYPE_CHECKING:
    from lakeport.streams import Engine, Message, Producer



class AmqpBridge(Bridge):
    """An AMQP 0-9-1 ingest or egress bridge; see :mod:`lakeport.routing`."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__(config)
        parts = urlsplit(config.url)
        if parts.scheme not in ("amqp", "amqps"):
            raise Invalid(f"the AMQP bridge takes amqp:// or amqps:// URLs, not {parts.scheme}://")
        if parts.query:
            raise Invalid("an AMQP broker URL takes no options: use amqp://host:port/vhost")
        self.tls = parts.scheme == "amqps"
        self.host = parts.hostname or ""
        self.port = parts.port or (5671 if self.tls else 5672)
        self.where = f"{self.host}:{self.port}"
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        self.username = config.username or (unquote(parts.username) if parts.username
                                            else "guest")
        self._password = config.password.get_secret_value() if config.password else (
            unquote(parts.password) if parts.password else None)
        if not self.tls and (config.ca_file or config.cert_file):
            raise Invalid("TLS options need an amqps:// URL")
        self.ssl = self._ssl_context() if self.tls else None
        if config.direction == "ingest" and config.subscribe and not config.exchange:
            raise Invalid("AMQP binding keys (subscribe) need an exchange to bind to: give "
                          "the exchange, or only a queue to read it as it is")
        self.queue = config.queue or f"lakeport.{config.bridge_name}"
        self.levels = LevelTemplate(config.fields, separator=".") if config.fields else None
        self.template = TopicTemplate(config.publish, wildcards="*#") if config.publish \
            else None
        if config.direction == "ingest":
            keys = ",".join(config.subscribe)
            self.status.source = (f"{config.shown_url} {config.exchange} {keys} → queue "
                                  f"{self.queue}" if config.exchange
                                  else f"{config.shown_url} queue {self.queue}")

    # -- connecting --------------------------------------------------------------------
    async def _connect(self, prefetch: int | None = None) -> AmqpConnection:
        cfg = self.config
        try:
            connection = await asyncio.wait_for(aio_pika.connect(
                host=self.host, port=self.port, login=self.username,
                password=self._secret(self._password) or "", virtualhost=self.vhost,
                ssl=self.tls, ssl_context=self.ssl, timeout=cfg.connect_timeout,
                client_properties={"connection_name": f"lakeport-{cfg.bridge_name}"}),
                cfg.connect_timeout)
        except BaseException as exc:
            raise self._translate(exc) from None
        try:
            channel = await connection.channel(publisher_confirms=True,
                                               on_return_raises=True)
            if prefetch:
                await channel.set_qos(prefetch_count=prefetch)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await connection.close()
            raise self._translate(exc) from None
        return AmqpConnection(connection, channel, self.where)

    def _translate(self, exc: BaseException) -> BaseException:
        """A connection failure as a lakeport error: Transient when a retry can help."""
        if not isinstance(exc, Exception):  # cancelled, interrupted: not a broker's answer
            return exc
        if isinstance(exc, amqp_errors.ProbableAuthenticationError) or "ACCESS_REFUSED" in str(exc):
            return Unauthorized(f"the AMQP broker {self.where} refused the login for user "
                                f"{self.username!r}")
        cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Terminal(f"TLS: the certificate of the AMQP broker {self.where} did not "
                            f"verify ({cause.verify_message or cause.reason}): give the CA that "
                            "signed it with --ca-file")
        if isinstance(cause, ssl.SSLError):
            return Terminal(f"TLS handshake with the AMQP broker {self.where} failed: "
                            f"{cause.reason or cause}")
        if isinstance(exc, TimeoutError):
            return Unavailable(f"cannot reach the AMQP broker {self.where}: no answer within "
                               f"{self.config.connect_timeout:g}s")
        if isinstance(exc, amqp_errors.ProtocolSyntaxError) and "Connection.Close" in str(exc):
            return Terminal(f"the AMQP broker {self.where} refused to open vhost {self.vhost!r} "
                            f"for user {self.username!r}: is it there, may the user use it?")
        if isinstance(exc, amqp_errors.ChannelNotFoundEntity | amqp_errors.ChannelClosed):
            return Terminal(f"the AMQP broker {self.where}: {exc.args[0] if exc.args else exc}")
        if isinstance(exc, OSError | amqp_errors.AMQPError):
            errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            reason = os.strerror(errno) if errno else str(exc)
            return Unavailable(f"cannot reach the AMQP broker {self.where}: {reason}")
        return exc

    async def healthcheck(self) -> None:
        conn = await self._connect()
        await conn.close()

    async def _exchange(self, conn: AmqpConnection) -> AbstractExchange:
        """The configured exchange, declared durable if missing."""
        cfg, channel = self.config, conn.channel
        if not cfg.exchange:
            return channel.default_exchange
        try:
            return await channel.declare_exchange(cfg.exchange, cfg.exchange_type,
                                                  durable=True)
        except amqp_errors.ChannelPreconditionFailed as exc:
            raise Terminal(f"the AMQP exchange {cfg.exchange!r} on {self.where} exists with "
                           f"other settings than type {cfg.exchange_type!r}, durable: "
                           f"{exc.args[0] if exc.args else exc}") from None
        except (amqp_errors.AMQPError, ConnectionError) as exc:
            raise conn.lost(exc) from None

    async def publisher(self) -> AmqpPublisher:
        """A connected publisher to the exchange (declared durable of ``exchange_type`` if
        missing)."""
        conn = await self._connect()
        try:
            exchange = await self._exchange(conn)
            return AmqpPublisher(conn, exchange, await conn.channel.get_underlay_channel())
        except BaseException:
            await conn.close()
            raise

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
            await self._reconnecting(stop, self._subscribed,
                                     lambda conn: self._pump(conn, engine, producer, stop))

    async def _subscribed(self) -> AmqpConnection:
        """A connection whose channel consumes the queue (declared and bound first)."""
        cfg = self.config
        conn = await self._connect(min(cfg.prefetch, cfg.batch_size))
        try:
            exchange = await self._exchange(conn) if cfg.exchange else None
            try:
                queue = await conn.channel.declare_queue(self.queue, durable=True)
                for key in cfg.subscribe if exchange is not None else ():
                    await queue.bind(exchange, routing_key=key)
            except amqp_errors.ChannelPreconditionFailed as exc:
                raise Terminal(f"the AMQP queue {self.queue!r} on {self.where} exists with "
                               f"other settings: {exc.args[0] if exc.args else exc}") from None
            except amqp_errors.ChannelAccessRefused as exc:
                raise Terminal(f"the AMQP broker {self.where} refused the queue "
                               f"{self.queue!r}: {exc.args[0] if exc.args else exc}") from None
            pending, ready = conn.pending, conn.ready

            async def on_message(delivery: Delivery) -> None:
                pending.append(delivery)
                ready.set()

            await queue.consume(on_message, no_ack=False)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _pump(self, conn: AmqpConnection, engine: Engine, producer: Producer,
                    stop: asyncio.Event) -> None:
        pending, ready = conn.pending, conn.ready
        size = self.config.batch_size
        while not stop.is_set() and conn.alive:
            if not pending:
                ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready.wait(), 0.2)
                continue
            batch = [pending.popleft() for _ in range(min(size, len(pending)))]
            self.status.messages_in += len(batch)
            await self._store(batch, engine, producer)
            if conn.alive:  # else the broker delivers them again, marked redelivered
                try:
                    await batch[-1].ack(multiple=True)
                except (amqp_errors.AMQPError, ConnectionError, RuntimeError) as exc:
                    raise conn.lost(exc) from None

    async def _store(self, batch: list[Delivery], engine: Engine, producer: Producer) -> None:
        """Produce ``batch`` (dead letters for the unreadable)."""
        records: list[dict[str, Any]] = []
        ids: list[str | None] = []
        dups: list[bool] = []
        dead: list[tuple[bytes, str | None, dict[str, str]]] = []
        own_ids: set[str] = set()
        for delivery in batch:
            key, body = delivery.routing_key or "", delivery.body
            if delivery.message_id:
                base, dup = f"amqp:{delivery.message_id}", True
                if base in own_ids:  # the publisher's message_id twice in one batch
                    self.status.duplicates += 1
                    continue
                own_ids.add(base)
            else:
                digest = hashlib.blake2b(key.encode() + b"\0" + body, digest_size=8).hexdigest()
                base, dup = f"amqp:{self.queue}:{digest}", bool(delivery.redelivered)
            try:
                read = self._readings(key, body)
            except Unreadable as exc:
                dead.append((body, base, {"amqp-routing-key": key,
                                          "amqp-exchange": delivery.exchange or "",
                                          "dead-letter-reason": str(exc)}))
                continue
            if len(read) == 1:
                records.append(read[0])
                ids.append(base)
                dups.append(dup)
            else:
                records.extend(read)
                ids.extend(f"{base}.{i}" for i in range(len(read)))
                dups.extend([dup] * len(read))
        if records:
            await self._produce(producer, records, ids, dups)
        if dead:
            await self._dead_letters(engine, dead)

    # -- egress ------------------------------------------------------------------------
    async def _egress(self, engine: Engine, stop: asyncio.Event) -> None:
        cfg = self.config
        name, topic = cfg.bridge_name, cfg.from_topic or ""

        async def work(publisher: AmqpPublisher) -> None:
            """Two batches in flight: the next is read and sent while the broker confirms
            the one before; the topic is acked in order, each batch once it is confirmed."""
            consumer = engine.consumer(name, topic, position="unread", on_no_exists="create")
            sending: tuple[asyncio.Task[None], int] | None = None
            async with consumer:
                try:
                    while not stop.is_set() and publisher.conn.alive:
                        try:
                            batch = await consumer.recv_batch(
                                cfg.batch_size, timeout=0.2 if sending is None else 0.005)
                        except TimeoutError:
                            batch = []
                        following = (asyncio.create_task(self._send(
                            publisher, batch, engine, topic)), batch[-1].seqno) if batch \
                            else None
                        if sending is not None:
                            await sending[0]
                            await consumer.ack(sending[1])
                        sending = following
                    if sending is not None:
                        await sending[0]
                        await consumer.ack(sending[1])
                        sending = None
                finally:  # after an error: the batch in flight is read again, not acked
                    if sending is not None:
                        sending[0].cancel()
                        with contextlib.suppress(BaseException):
                            await sending[0]

        await self._reconnecting(stop, self.publisher, work)

    async def _send(self, publisher: AmqpPublisher, batch: list[Message], engine: Engine,
                    topic: str) -> None:
        """Publish ``batch`` and wait for the confirms; the unroutable become dead letters.
        Unavailable (nothing to ack) if the connection ends first."""
        from lakeport.streams import dead_letters

        assert self.template is not None
        self.status.messages_in += len(batch)
        letters: list[tuple[Message, str]] = []
        items: list[tuple[str, bytes]] = []
        ids: list[str] = []
        sent: list[Message] = []
        for message in batch:
            try:
                fields = message_fields(message) if self.template.fields else {}
                items.append((self.template.render(fields), message.data))
            except Unreadable as exc:
                letters.append((message, str(exc)))
                continue
            ids.append(f"lakeport:{topic}:{message.seqno}")
            sent.append(message)
        if items:
            letters.extend((sent[i], reason) for i, reason in
                           await publisher.publish(items, ids))
        if letters:
            dead = await self._dead_producer(engine)
            await dead_letters.send_dead_letters(dead, topic, letters, f"{dead.name}:",
                                                 {"bridge": self.config.bridge_name})
            self.status.dead_letters += len(letters)
        self.status.messages_out += len(batch) - len(letters)


__all__ = ["AmqpBridge", "AmqpPublisher"]
