"""The bridge seam: a :class:`Bridge` per broker protocol, chosen by URL scheme, and what every
bridge shares: its :class:`BridgeConfig`, its :class:`BridgeStatus`, the reconnect loop with
its :class:`Backoff`, and the ingest steps (a broker message's readings, the produce with
msg_ids, dead letters). How a payload is read and a topic templated is in
:mod:`lakeport.routing.bridge_payloads`.

A bridge runs one way: *ingest* (broker → a lakeport topic: ``to_topic`` set) or *egress*
(a lakeport topic → the broker: ``from_topic`` set). Either way nothing is acknowledged on
one side before the other side confirmed it: an ingest bridge acks the broker after the
produce is durable, an egress bridge acks the topic after the broker confirmed the publish.

Third parties add bridges through the ``lakeport.bridges`` entry point group (name = scheme,
value = ``module:BridgeClass``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import secrets
import ssl
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from lakeport.errors import Invalid, Transient
from lakeport.routing.bridge_payloads import LevelTemplate, PayloadFormat, read_payload

if TYPE_CHECKING:
    from lakeport.streams import Engine, Producer

log = logging.getLogger("lakeport.routing")

# scheme -> (module:class, pip extra, the packages the bridge imports)
_BUILTIN: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mqtt": ("lakeport.routing.mqtt:MqttBridge", "routing", ("paho.mqtt",)),
    "mqtts": ("lakeport.routing.mqtt:MqttBridge", "routing", ("paho.mqtt",)),
    "amqp": ("lakeport.routing.amqp:AmqpBridge", "routing", ("aio_pika",)),
    "amqps": ("lakeport.routing.amqp:AmqpBridge", "routing", ("aio_pika",)),
}
_REGISTERED: dict[str, type[Bridge]] = {}
_HEAD_CACHE = 10_000  # broker topics whose fields are kept


class BridgeConfig(BaseModel):
    """One bridge. Unknown keys are errors; the password may be ``<% secrets.NAME %>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="the broker: mqtt://host:1883, mqtts://host:8883 "
                                 "(?protocol=5 for MQTT 5), amqp://host:5672/vhost, amqps://")
    name: str | None = Field(default=None, description="the bridge's name: its producer or "
                             "consumer name and client id (default from the topic)")
    streams_url: str | None = Field(default=None, description="the lakeport engine "
                                    "(default: LAKEPORT_STREAMS or the embedded one)")
    # ingest: broker -> lakeport topic
    subscribe: list[str] = Field(default_factory=list, description="topic filters to read")
    to_topic: str | None = Field(default=None, description="the lakeport topic to produce to")
    fields: str | None = Field(default=None, description="topic levels into fields: "
                               "plant/{site}/{asset}/{datastream}")
    payload: PayloadFormat = Field(default="auto", description="auto, json, number, text, sos")
    topic_field: str | None = Field(default="topic", description="the field that gets the "
                                    "broker topic (None: none)")
    # egress: lakeport topic -> broker
    from_topic: str | None = Field(default=None, description="the lakeport topic to publish")
    publish: str | None = Field(default=None, description="the broker topic template: "
                                "plant/{asset}/out")
    qos: int = Field(default=1, ge=0, le=1, description="MQTT QoS 0 or 1")
    # AMQP 0-9-1
    exchange: str | None = Field(default=None, description="AMQP: the exchange that ingest "
                                 "binds its queue to (subscribe: the binding keys) or egress "
                                 "publishes to (default: the default exchange)")
    exchange_type: Literal["direct", "topic", "fanout", "headers"] = Field(
        default="topic", description="AMQP: the type the exchange is declared with if missing")
    queue: str | None = Field(default=None, description="AMQP ingest: the queue to read, "
                              "declared durable if missing (default lakeport.<name>)")
    prefetch: int = Field(default=1000, ge=1, le=65535, description="AMQP ingest: "
                          "deliveries not acked yet at most")
    # connection
    username: str | None = None
    password: SecretStr | None = None
    ca_file: str | None = Field(default=None, description="CA certificates (PEM) to verify "
                                "the broker with (default: the system's)")
    cert_file: str | None = Field(default=None, description="client certificate (PEM)")
    key_file: str | None = Field(default=None, description="client key (PEM)")
    insecure: bool = Field(default=False, description="do not verify the broker's certificate")
    protocol: Literal["3.1.1", "5"] | None = Field(default=None, description="MQTT version "
                                                   "(default: ?protocol= in the URL, else 3.1.1)")
    client_id: str | None = Field(default=None, description="default lakeport-<name>")
    keepalive: int = Field(default=30, ge=5, le=65535)
    session_expiry: int = Field(default=86400, ge=0, description="seconds an MQTT 5 broker "
                                "keeps an ingest bridge's session while it is away")
    connect_timeout: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=10_000, ge=1, le=100_000)
    max_pending: int = Field(default=100_000, ge=1, description="received messages waiting "
                             "for the produce at most (reading pauses beyond)")
    retry_first: float = Field(default=0.5, gt=0)
    retry_max: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> BridgeConfig:
        if (self.to_topic is None) == (self.from_topic is None):
            raise ValueError("a bridge runs one way: give to_topic (ingest) or from_topic "
                             "(egress)")
        if self.to_topic is not None and not self.subscribe and not self.queue:
            raise ValueError("an ingest bridge needs at least one topic filter to subscribe "
                             "(AMQP: a binding key, or a queue)")
        if self.from_topic is not None and not self.publish:
            raise ValueError("an egress bridge needs a publish topic template")
        from lakeport.streams.types import validate_topic_name

        for name in (self.to_topic, self.from_topic, self.name):
            if name is not None:
                validate_topic_name(name)
        parts = urlsplit(self.url)
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"bad broker URL {self.shown_url!r}: use scheme://host:port, "
                             "e.g. mqtt://127.0.0.1:1883")
        return self

    @classmethod
    def parse(cls, **fields: Any) -> BridgeConfig:
        """Build a config; a bad field is :class:`Invalid` naming it."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise first_problem(exc, "bridge option", "bridge") from None

    @property
    def direction(self) -> Literal["ingest", "egress"]:
        return "ingest" if self.to_topic is not None else "egress"

    @property
    def bridge_name(self) -> str:
        scheme = urlsplit(self.url).scheme.removesuffix("s") or "bridge"
        return self.name or f"{scheme}-{self.to_topic or self.from_topic}"

    @property
    def shown_url(self) -> str:
        """The URL without a password or query (safe to print)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = (f"{parts.username}@" if parts.username else "") + host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def first_problem(exc: ValidationError, field: str, whole: str) -> Invalid:
    """The first error of ``exc`` as one line: ``bad <field> <path>: <problem>``, or
    ``bad <whole>: <problem>`` when it is about no field."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return Invalid(f"bad {field} {where}: {message}" if where else f"bad {whole}: {message}")


class Backoff:
    """Reconnect delays that double from ``first`` up to ``maximum``, with some jitter."""

    def __init__(self, first: float = 0.5, maximum: float = 30.0, factor: float = 2.0,
                 jitter: float = 0.1) -> None:
        self.first, self.maximum, self.factor, self.jitter = first, maximum, factor, jitter
        self._next = first

    def next(self) -> float:
        """The delay before the next try (and double the one after)."""
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        """After a success: the next failure waits ``first`` again."""
        self._next = self.first


class RateMeter:
    """Messages per second over the last few seconds."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, int]] = deque()

    def rate(self, count: int) -> float:
        now = time.monotonic()
        samples = self._samples
        samples.append((now, count))
        while len(samples) > 1 and now - samples[0][0] > self.seconds:
            samples.popleft()
        first_time, first_count = samples[0]
        return (count - first_count) / (now - first_time) if now > first_time else 0.0


@dataclass
class BridgeStatus:
    """What a running bridge is doing: ``state`` is starting, connecting, connected,
    retrying (``retry_in`` seconds after ``last_error``), stopped or failed."""

    name: str
    direction: str
    source: str
    target: str
    state: str = "starting"
    messages_in: int = 0  # received from the source
    messages_out: int = 0  # confirmed by the target, then acknowledged to the source
    duplicates: int = 0  # redeliveries already stored, dropped by their msg_id
    dead_letters: int = 0  # messages that cannot be bridged, sent to the dead-letter topic
    connects: int = 0
    last_error: str | None = None
    retry_in: float | None = None
    started: float = field(default_factory=time.time)
    _meter: RateMeter = field(default_factory=RateMeter, repr=False)

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    @property
    def rate(self) -> float:
        """Messages out per second over the last five seconds (sample it about once a second)."""
        return self._meter.rate(self.messages_out)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "direction": self.direction, "source": self.source,
                "target": self.target, "state": self.state, "connected": self.connected,
                "messages_in": self.messages_in, "messages_out": self.messages_out,
                "duplicates": self.duplicates, "dead_letters": self.dead_letters,
                "connects": self.connects, "rate": round(self.rate, 1),
                "last_error": self.last_error, "retry_in": self.retry_in,
                "started": self.started}

    def line(self) -> str:
        """One line for a terminal or a log."""
        text = (f"{self.name} [{self.state}] {self.source} → {self.target}: "
                f"{self.messages_in:,} in, {self.messages_out:,} out ({self.rate:,.0f}/s)")
        if self.duplicates:
            text += f", {self.duplicates:,} duplicates dropped"
        if self.dead_letters:
            text += f", {self.dead_letters:,} dead letters"
        if self.state == "retrying" and self.last_error:
            text += f" — {self.last_error}; retrying in {self.retry_in or 0:.1f}s"
        elif self.last_error and self.state == "failed":
            text += f" — {self.last_error}"
        return text



class Connection(Protocol):
    """What :meth:`Bridge._reconnecting` needs of a protocol's connection."""

    @property
    def error(self) -> str | None:
        """Why the connection ended (None while it is up)."""

    async def close(self) -> None: ...


class Publisher(Protocol):
    """A connection that publishes to a broker and waits for its confirms: what egress
    bridges and rule actions send through (:meth:`Bridge.publisher`)."""

    async def publish(self, items: Sequence[tuple[str, bytes]]) -> list[tuple[int, str]]:
        """Publish ``(target, body)`` pairs (the target: an MQTT topic, an AMQP routing
        key) and return once the broker confirmed every one: the ``(index, reason)`` of
        those it refused. Transient when the connection is lost before."""

    async def close(self) -> None: ...


class Bridge(ABC):
    """Moves messages between a broker and a lakeport topic; built from one config."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        if config.direction == "ingest":
            source, target = f"{config.shown_url} {','.join(config.subscribe)}", config.to_topic
        else:
            source, target = config.from_topic, f"{config.shown_url} {config.publish}"
        self.status = BridgeStatus(config.bridge_name, config.direction, source or "",
                                   target or "")
        self.levels: LevelTemplate | None = None  # the protocol's, from config.fields
        self._heads: dict[str, dict[str, Any]] = {}
        self._high = 0  # the highest seqno this bridge stored (dedup hits are below it)
        self._dead: Producer | None = None

    @abstractmethod
    async def run(self, stop: asyncio.Event | None = None,
                  engine: Engine | None = None) -> BridgeStatus:
        """Bridge until ``stop`` is set, reconnecting with backoff while the broker cannot be
        reached; a terminal error (a refused login, a certificate that does not verify)
        ends it with that error. ``engine``: the lakeport engine (default: opened from
        ``config.streams_url``)."""

    @abstractmethod
    async def healthcheck(self) -> None:
        """Connect and log in once, then disconnect: fail fast on a bad address, password
        or certificate."""

    async def publisher(self) -> Publisher:
        """A connected :class:`Publisher` on this bridge's broker, for rule actions (the
        config's connection options apply; its topics are not read)."""
        raise Invalid(f"{urlsplit(self.config.url).scheme}:// bridges cannot publish")

    def _ssl_context(self) -> ssl.SSLContext:
        """The TLS context of ``ca_file``, ``cert_file``, ``key_file`` and ``insecure``."""
        cfg = self.config
        try:
            context = ssl.create_default_context(cafile=cfg.ca_file)
            if cfg.cert_file:
                context.load_cert_chain(cfg.cert_file, cfg.key_file)
        except FileNotFoundError as exc:
            raise Invalid(f"TLS: no such file {exc.filename or cfg.ca_file!r}") from None
        except (ssl.SSLError, OSError) as exc:
            raise Invalid(f"TLS: cannot load the CA or client certificate: {exc}") from None
        if cfg.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @staticmethod
    def _secret(password: str | None) -> str | None:
        """``password``, or the secret it names (``<% secrets.NAME %>``)."""
        if password is None or "<%" not in password:
            return password
        from lakeport.apps.secrets import SecretStore, resolve_secrets

        return resolve_secrets(password, SecretStore())

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _reconnecting(self, stop: asyncio.Event, connect: Callable[[], Awaitable[Any]],
                            work: Callable[[Any], Awaitable[None]]) -> None:
        """``connect()``, run ``work(connection)`` until the connection ends, and again with
        backoff until ``stop``; a Transient error is retried, a Terminal one raised."""
        cfg, status = self.config, self.status
        backoff = Backoff(cfg.retry_first, cfg.retry_max)
        while not stop.is_set():
            status.state = "connecting"
            try:
                conn: Connection = await connect()
            except Transient as exc:
                error = str(exc)
            else:
                backoff.reset()
                status.state, status.retry_in = "connected", None
                status.connects += 1
                try:
                    await work(conn)
                except Transient as exc:  # the lakeport side went away: start over
                    error = str(exc)
                else:
                    if stop.is_set():
                        return
                    error = conn.error or "the connection ended"
                finally:
                    await conn.close()
            status.last_error, status.retry_in = error, backoff.next()
            status.state = "retrying"
            log.info("bridge %s: %s; retrying in %.1fs", status.name, error, status.retry_in)
            await self._sleep(status.retry_in, stop)

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()`` again with backoff while the lakeport engine is unavailable."""
        backoff = Backoff(self.config.retry_first, self.config.retry_max)
        while True:
            try:
                return await call()
            except Transient as exc:
                self.status.last_error = f"lakeport topic: {exc}"
                await asyncio.sleep(backoff.next())

    async def _dead_producer(self, engine: Engine) -> Producer:
        """The producer of ``dead-letter.bridge.<name>`` (bytes), opened on first use."""
        from lakeport.streams import dead_letters

        if self._dead is None:
            name = self.config.bridge_name
            dead = engine.producer(name, f"dead-letter.bridge.{name}",
                                   options=dead_letters.OPTIONS)
            await dead.open()
            self._dead = dead
        return self._dead

    # -- ingest: what every protocol shares ----------------------------------------------
    def _readings(self, topic: str, payload: bytes) -> list[dict[str, Any]]:
        """The readings of a broker message on ``topic`` (Unreadable says why not)."""
        head = self._heads.get(topic)
        if head is None:
            field = self.config.topic_field
            head = {field: topic} if field else {}
            if self.levels is not None:
                head.update(self.levels.match(topic))
            if len(self._heads) >= _HEAD_CACHE:
                self._heads.clear()
            self._heads[topic] = head
        return read_payload(head, payload, self.config.payload)

    async def _produce(self, producer: Producer, records: list[dict[str, Any]],
                       ids: list[str | None], dups: list[bool]) -> None:
        """Store ``records`` with their msg_ids. A record whose msg_id the topic already
        holds is dropped when ``dups`` says it is a redelivery (or the publisher's own id),
        else stored anew under a fresh id: it only happens to carry a stored one's id."""
        has_ids = any(ids)
        seqnos = await self._retrying(lambda: producer.produce_many(
            records, msg_ids=ids if has_ids else None))  # type: ignore[arg-type]
        high, again, duplicates = self._high, [], 0
        for index, seqno in enumerate(seqnos):
            if seqno > high:
                high = seqno
            elif dups[index]:
                duplicates += 1
            else:
                again.append(index)
        self._high = high
        if again:
            fresh = [f"{ids[i]}~{secrets.token_hex(4)}" for i in again]
            more = await self._retrying(lambda: producer.produce_many(
                [records[i] for i in again], msg_ids=fresh))
            self._high = max(self._high, *more)
        self.status.duplicates += duplicates
        self.status.messages_out += len(records) - duplicates

    async def _dead_letters(self, engine: Engine,
                            letters: list[tuple[bytes, str | None, dict[str, str]]]) -> None:
        """Store broker messages that cannot be read as they are, with their headers (a
        ``dead-letter-reason`` among them), in ``dead-letter.bridge.<name>``."""
        name = self.config.bridge_name
        producer = await self._dead_producer(engine)
        await self._retrying(lambda: asyncio.gather(*(
            producer.produce(payload, msg_id=msg_id,
                             headers={**headers, "dead-letter-bridge": name})
            for payload, msg_id, headers in letters)))
        self.status.dead_letters += len(letters)


def register_bridge(scheme: str, bridge: type[Bridge]) -> None:
    """Make ``scheme://`` broker URLs open ``bridge``."""
    _REGISTERED[scheme] = bridge


def known_bridge_schemes() -> list[str]:
    plugins = {ep.name for ep in entry_points(group="lakeport.bridges")}
    return sorted(set(_BUILTIN) | set(_REGISTERED) | plugins)


def bridge_class(scheme: str) -> type[Bridge]:
    """The bridge for ``scheme``; Invalid listing the known ones, or naming the extra to
    install when its package is missing."""
    if scheme in _REGISTERED:
        return _REGISTERED[scheme]
    for ep in entry_points(group="lakeport.bridges"):
        if ep.name == scheme:
            return ep.load()
    if scheme not in _BUILTIN:
        raise Invalid(f"unknown bridge URL scheme {scheme!r}: use one of "
                      + ", ".join(f"{s}://" for s in known_bridge_schemes()))
    target, extra, requires = _BUILTIN[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        for package in requires:
            importlib.import_module(package)
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Invalid(f"the {scheme}:// bridge needs a missing package ({exc.name}): "
                      f"pip install 'lakeport[{extra}]'") from exc
    return getattr(module, class_name)


def open_bridge(config: BridgeConfig | dict[str, Any]) -> Bridge:
    """The bridge for ``config.url``'s scheme (not running yet: ``await bridge.run(stop)``)."""
    if not isinstance(config, BridgeConfig):
        config = BridgeConfig.parse(**config)
    return bridge_class(urlsplit(config.url).scheme)(config)
