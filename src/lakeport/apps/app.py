"""The :class:`App`: an app's connection to its topics, its handlers, timers and schedules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from lakeport.apps.configuration import follow_updates, initial_configuration
from lakeport.apps.connection import SignalStopper, Stopped, connect_engine, unless_stopped
from lakeport.apps.dispatch import Dispatcher, MessageStream
from lakeport.apps.filters import as_filter, asset_equals, input_equals
from lakeport.apps.handlers import StreamHandler, call_handler, handler_name
from lakeport.apps.health import HealthServer
from lakeport.apps.messages import (
    ASSET_DATA,
    CONTROL_CHANGES,
    DATA_TAGS,
    RECOMMENDATIONS,
    AppMessage,
    config_topic,
    dead_letter_topic,
    topic_name,
)
from lakeport.apps.timers import Schedule, Timer, check_cron, parse_interval, parse_timezone
from lakeport.errors import Closed, Invalid
from lakeport.home import default_streams_url
from lakeport.streams import Consumer, Engine, Producer
from lakeport.streams.types import validate_topic_name

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest, Subscription

logger = logging.getLogger("lakeport.apps")
F = TypeVar("F", bound=Callable[..., Any])


class App:
    """An app reading and writing lakeport topics, described by its ``app.yaml``.

    Without arguments it reads what ``lakeport app run`` sets: ``LAKEPORT_APP_DIR`` (else
    ``./app.yaml``), ``LAKEPORT_APP_CONFIGURATION``, ``LAKEPORT_STREAMS`` (else the embedded
    engine under the lakeport home) and ``LAKEPORT_HEALTH_PORT``.

    ``max_failures``: how often a handler may fail on one message before the message goes to
    ``dead-letter.<app>``. ``mode="shared"`` lets several instances share the work.
    """

    connect_backoff = 0.2  # first retry delay in seconds; doubles up to max_backoff
    max_backoff = 10.0

    def __init__(
        self,
        name: str | None = None,
        *,
        url: str | None = None,
        app_dir: str | Path | None = None,
        configuration: dict[str, Any] | None = None,
        health_port: int | None = None,
        max_failures: int = 3,
        mode: str = "exclusive",
        subscriptions: Sequence[Subscription] | None = None,
        connect_timeout: float = 60.0,
        retry_delay: float = 0.1,
        handle_signals: bool = True,
    ) -> None:
        self.manifest: Manifest | None = _find_manifest(app_dir)
        name = name or (self.manifest.name if self.manifest is not None else None)
        if not name:
            raise Invalid("App needs a name: no app.yaml found (set LAKEPORT_APP_DIR or "
                          "app_dir=...) and no name given")
        validate_topic_name(name)
        if mode not in ("exclusive", "shared"):
            raise Invalid(f"bad app mode {mode!r}: use exclusive or shared")
        if max_failures < 1:
            raise Invalid(f"max_failures must be 1 or more, got {max_failures}")
        self.name = name
        self.mode = mode
        self.max_failures = max_failures
        self.retry_delay = retry_delay
        self.connect_timeout = connect_timeout
        self.handle_signals = handle_signals
        self._url = url
        self._configuration = initial_configuration(configuration, self.manifest)
        if self.manifest is not None and (problems := self.manifest.validate_configuration(
                self._configuration)):
            raise Invalid(f"configuration of app {name} is not valid: " + "; ".join(problems))
        if subscriptions is None:
            subscriptions = self.manifest.subscriptions() if self.manifest is not None else []
        self.subscriptions: list[Subscription] = list(subscriptions)
        self._health = _health_server(health_port, self)

        self.on_connect: Callable[[], Any] | None = None
        self.on_disconnect: Callable[[], Any] | None = None
        self.on_app_configuration: Callable[[dict[str, Any]], Any] | None = None

        self._handlers: list[StreamHandler] = []
        self._timers: list[Timer] = []
        self._schedules: list[Schedule] = []
        self._engine: Engine | None = None
        self._consumers: list[Consumer] = []
        self._producers: dict[str, Producer] = {}
        self._dispatcher: Dispatcher | None = None
        self._config_task: asyncio.Task[None] | None = None
        self._connected = False
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._signals = SignalStopper(self.stop, f"app {self.name}")

    # -- properties --------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The streams engine of a connected app."""
        if self._engine is None:
            raise Closed(f"app {self.name} is not connected: await app.connect() first")
        return self._engine

    @property
    def url(self) -> str:
        """The streams engine URL."""
        return self._url or default_streams_url()

    @property
    def app_configuration(self) -> dict[str, Any]:
        """The app's current configuration (replaced when a runtime update is accepted)."""
        return self._configuration

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def health_port(self) -> int | None:
        """The port of the health endpoints (the bound one once connected), None if off."""
        if self._health is None:
            return None
        return self._health.port or self._health.requested_port

    # -- connecting --------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the engine (retrying transient errors), the topics, consumers and producers."""
        if self._connected:
            return
        if self._health is not None:
            await self._health.start()
        if self.handle_signals:
            self._signals.install()
        try:
            topics = [topic_name(base) for base in (ASSET_DATA, CONTROL_CHANGES,
                                                     RECOMMENDATIONS, DATA_TAGS)]
            topics += [config_topic(self.name), dead_letter_topic(self.name)]
            self._engine = await unless_stopped(
                connect_engine(self.url, topics, who=f"app {self.name}",
                               timeout=self.connect_timeout, backoff=self.connect_backoff,
                               max_backoff=self.max_backoff),
                self._stop, f"app {self.name} stopped while connecting to {self.url}")
            await self._open_consumers(self._engine)
        except BaseException:
            await self._close_all()
            raise
        self._connected = True
        logger.info("app %s connected to %s (%d subscriptions)", self.name, self.url,
                    len(self.subscriptions))
        if self.on_connect is not None:
            await call_handler(self.on_connect)

    async def _open_consumers(self, engine: Engine) -> None:
        self._dispatcher = Dispatcher(self.name, self.dead_letter, max_failures=self.max_failures,
                                      retry_delay=self.retry_delay)
        for subscription in self.subscriptions:
            consumer = engine.consumer(self.name, subscription.topic, mode=self.mode,
                                       position="unread", on_no_exists="create")
            await consumer.open()
            self._consumers.append(consumer)
            self._dispatcher.add_source(subscription, consumer)
        if self.mode == "shared":  # every instance gets every update
            config = engine.consumer(f"{self.name}.{os.getpid()}-{id(self):x}",
                                     config_topic(self.name), position="end", ephemeral=True)
        else:
            config = engine.consumer(self.name, config_topic(self.name), position="end")
        await config.open()
        self._consumers.append(config)
        self._config_task = asyncio.create_task(
            follow_updates(config, self.name, self.manifest, self._apply_configuration),
            name=f"configuration of {self.name}")

    async def disconnect(self) -> None:
        """Stop reading, close consumers, producers and the engine; call ``on_disconnect``."""
        if not self._connected:
            await self._close_all()
            return
        self._connected = False
        if self._dispatcher is not None:
            self._dispatcher.stop()
            await self._dispatcher.wait(self._force)
            await self._dispatcher.flush()
        await self._close_all()
        logger.info("app %s disconnected", self.name)
        if self.on_disconnect is not None:
            await call_handler(self.on_disconnect)

    async def _close_all(self) -> None:
        self._connected = False
        if self._config_task is not None:
            self._config_task.cancel()
            await asyncio.gather(self._config_task, return_exceptions=True)
            self._config_task = None
        for resource in [*self._consumers, *self._producers.values()]:
            with contextlib.suppress(Exception):
                await resource.close()
        self._consumers.clear()
        self._producers.clear()
        if self._engine is not None:
            with contextlib.suppress(Exception):
                await self._engine.close()
            self._engine = None
        if self._health is not None:
            await self._health.stop()
        self._signals.remove()
        self._stop.clear()  # a new connection starts afresh
        self._force.clear()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # -- writing -----------------------------------------------------------------------------
    async def publish(self, message: AppMessage) -> int:
        """Write ``message`` to its conventional topic; return its seqno once durable."""
        if not isinstance(message, AppMessage):
            raise Invalid(f"publish takes an app message (Number, ControlChange, ...), not "
                          f"{type(message).__name__}")
        return await self.produce(topic_name(message.topic), message.to_payload())

    async def dead_letter(self, record: dict[str, Any]) -> int:
        """Write ``record`` to the app's dead-letter topic (``dead-letter.<app>``)."""
        return await self.produce(dead_letter_topic(self.name), record)

    async def produce(self, topic: str, payload: Any) -> int:
        """Write ``payload`` to ``topic`` (any topic, outside the convention of
        :meth:`publish`); return its seqno once durable."""
        if self._engine is None:
            raise Closed(f"app {self.name} is not connected: await app.connect() first")
        producer = self._producers.get(topic)
        if producer is None:
            opened = self._engine.producer(self.name, topic)
            await opened.open()
            producer = self._producers.setdefault(topic, opened)
            if producer is not opened:  # another publish opened one meanwhile
                await opened.close()
        return await producer.produce(payload)

    # -- reading -----------------------------------------------------------------------------
    def stream_filter(self, filter: Callable[[AppMessage], bool] | None = None, *,
                      auto_ack: bool = True) -> MessageStream:
        """The app's messages that pass ``filter``, in order, as an async iterator.

        A message is acked when the loop asks for the next one, i.e. after the loop body
        finished with it: a crash inside the body reads it again after a restart. Leaving
        the loop (``break`` or an exception) counts the current message as done. The loop
        ends when the app stops (SIGTERM/SIGINT or :meth:`stop`). Reading starts with the
        first loop (or :meth:`run`): start every loop before expecting messages in it.

        ``auto_ack=False`` leaves acking to the app, for work that completes in batches
        (an exporter acks once its file is written)::

            stream = app.stream_filter(filters.is_data_message, auto_ack=False)
            async for message in stream:
                if batch.add(message):
                    await batch.write()
                    await stream.ack(message)  # this message and all before it are done
        """
        if self._dispatcher is None or not self._connected:
            raise Closed(f"app {self.name} is not connected: await app.connect() first")
        self._check_reads()
        return self._dispatcher.messages(as_filter(filter), str(filter), auto_ack)

    def stream(self, *, assets: str | Iterable[str] | None = None,
               inputs: str | Iterable[str] | None = None,
               filter: Callable[[AppMessage], bool] | None = None) -> Callable[[F], F]:
        """Decorate a handler ``(message) -> None`` (sync or async) that :meth:`run` calls.

        ``assets`` / ``inputs`` (data stream names) and ``filter`` narrow what it receives.
        The message is acked after the handler returns; a handler that raises is retried
        and, after ``max_failures`` failures, the message goes to ``dead-letter.<app>``.
        Sync handlers run in a worker thread.
        """
        selected = as_filter(filter)
        if assets is not None:
            selected = asset_equals(assets) & selected
        if inputs is not None:
            selected = input_equals(inputs) & selected

        def register(handler: F) -> F:
            self._handlers.append(StreamHandler(selected, handler_name(handler),
                                                handler=handler))
            return handler

        return register

    def _check_reads(self) -> None:
        if not self.subscriptions:
            raise Invalid(f"app {self.name} reads no topic: its app.yaml declares no inputs "
                          "(data_streams.inputs, control_changes.inputs, exporter_io, or "
                          "importer_io with control: true)")

    # -- time --------------------------------------------------------------------------------
    def timer(self, interval: str | float | timedelta) -> Callable[[F], F]:
        """Decorate a handler ``() -> None`` that :meth:`run` calls every ``interval``."""
        seconds = parse_interval(interval)

        def register(handler: F) -> F:
            self._timers.append(Timer(handler, seconds))
            return handler

        return register

    def schedule(self, cron: str, timezone: str | None = None) -> Callable[[F], F]:
        """Decorate a handler ``() -> None`` that :meth:`run` calls when ``cron`` fires.

        ``cron`` has five fields (``"*/5 * * * *"``), read in ``timezone`` (IANA, default UTC).
        """
        check_cron(cron)
        parse_timezone(timezone)

        def register(handler: F) -> F:
            self._schedules.append(Schedule(handler, cron, timezone))
            return handler

        return register

    # -- running -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Run handlers, timers and schedules until SIGTERM/SIGINT or :meth:`stop`.

        On stop: reading stops, handlers finish the message they are on (a second signal
        cancels them), their messages are acked, and the app disconnects.
        """
        try:
            await self.connect()
        except Stopped:
            return
        assert self._dispatcher is not None
        tasks: list[asyncio.Task[None]] = []
        try:
            if self._handlers:
                self._check_reads()
                for handler in self._handlers:
                    self._dispatcher.add_receiver(handler)
            tasks += [asyncio.create_task(t.run(), name=f"timer {t.name}") for t in self._timers]
            tasks += [asyncio.create_task(s.run(), name=f"schedule {s.name}")
                      for s in self._schedules]
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.disconnect()

    def stop(self) -> None:
        """Ask the app to stop: :meth:`run` returns and ``stream_filter`` loops end."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()
        if self._dispatcher is not None:
            self._dispatcher.stop()

    # -- runtime configuration ---------------------------------------------------------------
    async def _apply_configuration(self, configuration: dict[str, Any]) -> None:
        self._configuration = configuration
        logger.info("app %s: configuration updated", self.name)
        if self.on_app_configuration is not None:
            try:
                await call_handler(self.on_app_configuration, configuration)
            except Exception:
                logger.exception("app %s: on_app_configuration failed", self.name)


def _find_manifest(app_dir: str | Path | None) -> Manifest | None:
    """The app's manifest: ``app_dir``, else ``LAKEPORT_APP_DIR``, else ``./app.yaml``."""
    from lakeport.apps.manifest import load_manifest

    folder = app_dir or os.environ.get("LAKEPORT_APP_DIR")
    if folder:
        return load_manifest(folder)
    if Path("app.yaml").is_file():
        return load_manifest(Path.cwd())
    return None


def _health_server(port: int | None, app: App) -> HealthServer | None:
    if port is None:
        text = os.environ.get("LAKEPORT_HEALTH_PORT")
        if not text:
            return None
        try:
            port = int(text)
        except ValueError:
            raise Invalid(f"LAKEPORT_HEALTH_PORT must be a port number, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise Invalid(f"bad health port {port}: use 0-65535 (0 picks a free port)")
    host = os.environ.get("LAKEPORT_HEALTH_HOST", "0.0.0.0")
    return HealthServer(port, lambda: app.connected, host=host, name=app.name)
