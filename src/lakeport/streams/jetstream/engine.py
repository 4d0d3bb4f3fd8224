"""The ``nats://`` engine: topics as JetStream streams (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from lakeport.errors import Closed, Conflict, NotFound, Unavailable
from lakeport.streams.base import Consumer, ConsumerSpec, Engine, Producer
from lakeport.streams.jetstream import api
from lakeport.streams.jetstream.codec import (
    LEASE_BUCKET,
    MSG_ID_HEADER,
    acked_of,
    parse_time_ns,
    read_consumer_description,
    read_topic_description,
    split_headers,
    stream_config,
    stream_name,
    topic_subject,
)
from lakeport.streams.jetstream.lease import LEASE_TTL, active_members
from lakeport.streams.jetstream.url import display_url, parse_nats_url
from lakeport.streams.types import (
    ConsumerInfo,
    OnNoExists,
    TopicInfo,
    TopicOptions,
    validate_topic_name,
)

CONNECT_TIMEOUT = 3.0  # seconds to connect at most, all attempts together
LOOKBACK_CHUNK = 10_000  # messages whose headers last_msg_id reads at a time
EPHEMERAL_INACTIVE = 30.0  # seconds before the server drops a lookup's consumer


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if exc is None:
        return "unknown error"
    return str(exc) or type(exc).__name__


async def _quiet(*_: Any) -> None:
    """Connection errors surface as lakeport errors; nothing is logged by nats-py."""


class JetStreamEngine(Engine):
    """Topics kept as streams on a NATS JetStream server: ``nats://host:4222``."""

    scheme = "nats"

    def __init__(self, url: str = "nats://127.0.0.1:4222") -> None:
        super().__init__(url)
        self.settings = parse_nats_url(url)
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._kv_lock = asyncio.Lock()

    # -- connection --------------------------------------------------------------------
    @property
    def nc(self) -> Client:
        if self._nc is None or self._nc.is_closed:
            raise Closed(
                f"the NATS engine for {display_url(self.url)} is not connected: use 'async with'"
            )
        return self._nc

    async def connect(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            return
        nc = Client()
        errors: list[BaseException] = []

        async def remember(exc: BaseException) -> None:
            errors[:] = [exc]  # the last one names why a connection failed

        servers = list(self.settings.servers)
        try:
            await asyncio.wait_for(
                nc.connect(
                    servers=servers,
                    connect_timeout=CONNECT_TIMEOUT / 2,
                    allow_reconnect=True,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.1,
                    error_cb=remember,
                    disconnected_cb=_quiet,
                    name="lakeport",
                    skip_subject_validation=True,
                ),
                timeout=CONNECT_TIMEOUT,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            cause = errors[-1] if isinstance(exc, nats.errors.NoServersError) and errors else exc
            await self._abandon(nc)
            raise Unavailable(
                f"cannot reach NATS at {display_url(self.url)}: {_reason(cause)}"
            ) from exc
        # once connected, ride out server restarts for about a minute
        nc.options["max_reconnect_attempts"] = 60
        nc.options["reconnect_time_wait"] = 1.0
        self._nc = nc
        try:
            await api.request(nc, "INFO", None, f"NATS at {display_url(self.url)}",
                              timeout=CONNECT_TIMEOUT)
        except Exception:
            await self.close()
            raise

    @staticmethod
    async def _abandon(nc: Client) -> None:
        try:
            await nc.close()
        except Exception:
            pass

    async def close(self) -> None:
        nc, self._nc, self._kv = self._nc, None, None
        if nc is None or nc.is_closed:
            return
        try:
            await asyncio.wait_for(nc.drain(), timeout=5)
        except Exception:
            await self._abandon(nc)

    async def leases(self) -> KeyValue:
        """The KV bucket holding consumer leases (created on first use)."""
        async with self._kv_lock:
            if self._kv is None:
                js = self.nc.jetstream()
                try:
                    self._kv = await js.key_value(LEASE_BUCKET)
                    await self._replicate_bucket()
                except nats.js.errors.BucketNotFoundError:
                    self._kv = await self._create_bucket(js, self.settings.replicas)
                except Exception as exc:
                    raise api.translate(exc, "cannot open the consumer lease bucket") from exc
            return self._kv

    @staticmethod
    async def _create_bucket(js: Any, replicas: int) -> KeyValue:
        config = KeyValueConfig(bucket=LEASE_BUCKET, history=1, ttl=LEASE_TTL,
                                storage=StorageType.FILE, replicas=replicas)
        try:
            return await js.create_key_value(config)
        except nats.js.errors.BadRequestError:  # created by someone else meanwhile
            return await js.key_value(LEASE_BUCKET)
        except Exception as exc:
            raise api.translate(exc, "cannot create the consumer lease bucket") from exc

    async def _replicate_bucket(self) -> None:
        """Give a lease bucket made with fewer copies the URL's ``replicas``."""
        stream = f"KV_{LEASE_BUCKET}"
        info = await self._api(f"STREAM.INFO.{stream}", None, "the consumer lease bucket",
                               idempotent=True)
        config = info["config"]
        if config.get("num_replicas", 1) < self.settings.replicas:
            config["num_replicas"] = self.settings.replicas
            await self._api(f"STREAM.UPDATE.{stream}", config,
                            "cannot replicate the consumer lease bucket")

    async def _api(self, subject: str, payload: dict[str, Any] | None, what: str,
                   idempotent: bool = False) -> dict[str, Any]:
        """A JetStream API request; an ``idempotent`` one rides through a failover."""
        return await api.request(self.nc, subject, payload, what,
                                 retry_for=self.failover_timeout if idempotent else 0.0)

    @property
    def failover_timeout(self) -> float:
        """Seconds requests are sent again while a cluster elects a leader."""
        return self.settings.failover_timeout

    # -- topics ------------------------------------------------------------------------
    async def stream_info(self, topic: str) -> dict[str, Any]:
        """The raw STREAM.INFO answer for a topic; NotFound if it does not exist."""
        try:
            return await self._api(f"STREAM.INFO.{stream_name(topic)}", None, f"topic {topic!r}",
                                   idempotent=True)
        except NotFound as exc:
            raise NotFound(f"topic {topic!r} does not exist") from exc

    async def _describe(self, name: str) -> TopicInfo:
        """The topic's info without listing its consumers (one request instead of many)."""
        info = self._topic_info(await self.stream_info(name), [])
        return info or TopicInfo(name, TopicOptions())

    async def create_topic(
        self, name: str, options: TopicOptions | None = None, *, exist_ok: bool = False
    ) -> TopicInfo:
        validate_topic_name(name)
        options = options or TopicOptions()
        try:
            await self.stream_info(name)
        except NotFound:
            pass
        else:
            if exist_ok:
                return await self.topic_info(name)
            raise Conflict(f"topic {name!r} already exists")
        config = stream_config(name, options, self.settings.replicas)
        if config["num_replicas"] > 1:
            await self.leases()  # while every server is up: a replicated bucket needs them
        try:
            await self._api(
                f"STREAM.CREATE.{config['name']}", config, f"cannot create topic {name!r}"
            )
        except Exception as exc:
            if api.err_code(exc) != api.STREAM_NAME_IN_USE:
                raise
            if not exist_ok:
                raise Conflict(f"topic {name!r} already exists") from exc
        return await self.topic_info(name)

    async def delete_topic(self, name: str) -> None:
        validate_topic_name(name)
        try:
            await self._api(f"STREAM.DELETE.{stream_name(name)}", None, f"topic {name!r}")
        except NotFound as exc:
            raise NotFound(f"topic {name!r} does not exist") from exc

    async def topic_info(self, name: str) -> TopicInfo:
        validate_topic_name(name)
        info = await self.stream_info(name)
        consumers = await self._consumers(info["config"]["name"])
        return self._topic_info(info, consumers) or TopicInfo(name, TopicOptions())

    async def list_topics(self) -> list[TopicInfo]:
        streams = await api.paged(self.nc, "STREAM.LIST", "streams", "cannot list topics",
                                  retry_for=self.failover_timeout)
        topics = [self._topic_info(s, []) for s in streams]
        return sorted((t for t in topics if t is not None), key=lambda t: t.name)

    @staticmethod
    def _topic_info(info: dict[str, Any], consumers: list[ConsumerInfo]) -> TopicInfo | None:
        config, state = info["config"], info["state"]
        described = read_topic_description(config["name"], config.get("description"))
        if described is None:
            return None
        name, options = described
        options = options.model_copy(update={"replicas": config.get("num_replicas") or 1})
        entries = state.get("messages", 0)
        last = state.get("last_seq", 0)
        return TopicInfo(
            name=name,
            options=options,
            first_seqno=state.get("first_seq", 0) if entries else last + 1,
            last_seqno=last,
            entries=entries,
            bytes=state.get("bytes", 0),
            oldest_ns=parse_time_ns(state.get("first_ts")) if entries else None,
            newest_ns=parse_time_ns(state.get("last_ts")) if entries else None,
            consumers=consumers,
        )

    async def _consumers(self, stream: str) -> list[ConsumerInfo]:
        records = await api.paged(
            self.nc, f"CONSUMER.LIST.{stream}", "consumers", "cannot list consumers",
            retry_for=self.failover_timeout,
        )
        kv = self._kv
        if kv is None and records:
            try:
                kv = await self.leases()
            except Exception:
                kv = None
        result = []
        for record in records:
            durable = record["name"]
            name, mode = read_consumer_description(durable, record["config"].get("description"))
            acked = acked_of(record)
            lag = record.get("num_pending", 0) + record.get("num_ack_pending", 0)
            active = await active_members(kv, f"{stream}.{durable}")
            result.append(ConsumerInfo(name, mode, acked, lag, active))
        return sorted(result, key=lambda c: c.name)

    async def last_msg_id(self, topic: str, producer: str | None, prefix: str,
                          limit: int = 1_000_000) -> str | None:
        """The newest msg_id starting with ``prefix`` that the producer named ``producer``
        (None: any) stored in ``topic``, among its last ``limit`` messages (None if none
        there), whatever the dedup window: read backwards from the end in chunks of
        headers only. Chained steps and forwarders use it to resume exactly once."""
        info = await self.stream_info(topic)
        state = info["state"]
        if not state.get("messages"):
            return None
        lowest = max(state.get("first_seq", 1), state["last_seq"] - limit + 1)
        end = state["last_seq"]
        while end >= lowest:
            start = max(lowest, end - LOOKBACK_CHUNK + 1)
            headers = await self._headers_between(topic, info["config"]["name"], start, end)
            for seq in sorted(headers, reverse=True):
                found = headers[seq].get(MSG_ID_HEADER)
                if found and found.startswith(prefix) and (
                        producer is None or split_headers(headers[seq])[0] == producer):
                    return found
            end = start - 1
        return None

    async def _headers_between(self, topic: str, stream: str, start: int, end: int
                               ) -> dict[int, dict[str, str]]:
        """The headers of messages ``start..end`` by seqno (fewer if retention took some)."""
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=start, ack_policy=AckPolicy.EXPLICIT,
                                headers_only=True, max_ack_pending=-1,
                                inactive_threshold=EPHEMERAL_INACTIVE)
        found: dict[int, dict[str, str]] = {}
        try:
            sub = await self.nc.jetstream().pull_subscribe(topic_subject(topic), stream=stream,
                                                           config=config)
        except Exception as exc:
            raise api.translate(exc, f"cannot read the msg ids of topic {topic!r}") from exc
        try:
            while start + len(found) <= end:
                try:
                    batch = await sub.fetch(min(LOOKBACK_CHUNK, end - start + 1), timeout=5)
                except nats.errors.TimeoutError:
                    break  # removed by retention meanwhile
                for msg in batch:
                    found[msg.metadata.sequence.stream] = dict(msg.headers or {})
                if batch and batch[-1].metadata.sequence.stream >= end:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return {seq: h for seq, h in found.items() if start <= seq <= end}

    # -- factories ---------------------------------------------------------------------
    def _make_producer(self, name: str, topic: str, on_no_exists: OnNoExists,
                       options: TopicOptions | None) -> Producer:
        from lakeport.streams.jetstream.producer import JetStreamProducer

        return JetStreamProducer(self, name, topic, on_no_exists, options)

    def _make_consumer(self, spec: ConsumerSpec) -> Consumer:
        from lakeport.streams.jetstream.consumer import JetStreamConsumer

        return JetStreamConsumer(self, spec)


__all__ = ["JetStreamEngine"]
