"""AMQP 0-9-1 bridges against the machine's RabbitMQ (127.0.0.1:5672, guest/guest).

Ingest: messages published with aio-pika to a topic exchange land in a lakeport topic with the
routing key's levels as fields; numbers, JSON and text payloads; an unreadable one is a dead
letter and the rest goes on; a publisher's message_id is stored once; a bridge killed with
SIGKILL while persistent messages are published loses none and stores none twice. Egress: a
topic published to a topic exchange with confirms, acked on the topic after them; the
unroutable are dead letters. The publisher seam. Bad input: an unreachable broker, a wrong
password, bad options.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from conftest import require_service
from lakeport.errors import Terminal, Unauthorized
from lakeport.routing import Bridge, open_bridge
from lakeport.streams import Engine, open_engine
from servers import free_port, port_open
from waiting import eventually, wait_until

aio_pika = pytest.importorskip("aio_pika")

pytestmark = pytest.mark.timeout(120)

BROKER = "amqp://127.0.0.1:5672"
LAKEPORT = [sys.executable, "-m", "lakeport.cli"]
KILL_MESSAGES = 5000


@pytest.fixture
def broker() -> str:
    if not port_open(5672):
        require_service("RabbitMQ", "no AMQP broker at 127.0.0.1:5672")
    return BROKER


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def channel() -> AsyncIterator[Any]:
    connection = await aio_pika.connect(BROKER)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


@contextlib.contextmanager
def cleanup(exchanges: list[str], queues: list[str]) -> Iterator[None]:
    """:func:`deleted_after` for a test without an event loop."""
    try:
        yield
    finally:
        async def delete() -> None:
            async with deleted_after(exchanges, queues):
                pass

        asyncio.run(delete())


@contextlib.asynccontextmanager
async def deleted_after(exchanges: list[str], queues: list[str]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        async with channel() as ch:
            for queue in queues:
                await ch.queue_delete(queue)
            for exchange in exchanges:
                await ch.exchange_delete(exchange)


async def publish(exchange: str, items: list[tuple[str, bytes]], **properties: Any) -> None:
    """Persistent messages, each confirmed by the broker."""
    async with channel() as ch:
        target = await ch.get_exchange(exchange)
        await asyncio.gather(*(target.publish(aio_pika.Message(
            body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties), key)
            for key, body in items))


@contextlib.asynccontextmanager
async def bridging(engine: Engine, **config: Any) -> AsyncIterator[Bridge]:
    """A bridge running in this process until the block ends (its errors are raised)."""
    bridge = open_bridge({"url": BROKER, **config})
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop, engine))
    try:
        assert await eventually(lambda: bridge.status.connected or task.done()), \
            f"the bridge did not connect: {bridge.status.line()}"
        if task.done():
            task.result()
        yield bridge
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def read_all(engine: Engine, topic: str) -> list[Any]:
    consumer = engine.consumer(f"reader-{uuid.uuid4().hex[:8]}", topic, position="beginning",
                               follow=False, ephemeral=True, on_no_exists="create")
    async with consumer:
        return [message.payload async for message in consumer]


async def dead_letters(engine: Engine, name: str) -> list[Any]:
    consumer = engine.consumer("look", f"dead-letter.bridge.{name}", position="beginning",
                               follow=False, ephemeral=True)
    async with consumer:
        return [m async for m in consumer]


def memory() -> str:
    return f"memory://{uuid.uuid4().hex}"


# -- ingest -----------------------------------------------------------------------------------
async def test_ingest_binding_keys_fields_payloads_and_a_dead_letter(broker: str) -> None:
    exchange, queue, name = unique("lakeport-test-x"), unique("lakeport-test-q"), unique("in")
    async with deleted_after([exchange], [queue]), open_engine(memory()) as engine:
        async with bridging(engine, exchange=exchange, queue=queue, name=name,
                            subscribe=["plant.*.*.temperature", "plant.*.*.pressure",
                                       "plant.south.#"],
                            to_topic="readings", fields="plant.{site}.{asset}.{datastream}"
                            ) as bridge:
            await publish(exchange, [
                ("plant.north.pump-01.temperature", b"85.2"),
                ("plant.north.pump-02.pressure",
                 b'{"value": 3.5, "unit": "bar", "asset": "ignored"}'),
                ("plant.north.pump-02.humidity", b"40"),  # bound by no key: not delivered
                ("plant.south.valve-07.state", b"\xff\xfe not utf-8"),
                ("plant.south.valve-07.ok", b"true"),
                ("plant.south.valve-07.mode", b"open"),
            ])
            assert await eventually(lambda: bridge.status.messages_out == 4
                                    and bridge.status.dead_letters == 1), bridge.status.line()
        got = {p["topic"].rsplit(".", 1)[1]: p for p in await read_all(engine, "readings")}
        assert got == {
            "temperature": {"topic": "plant.north.pump-01.temperature", "site": "north",
                            "asset": "pump-01", "datastream": "temperature", "value": 85.2},
            "pressure": {"topic": "plant.north.pump-02.pressure", "site": "north",
                         "asset": "pump-02", "datastream": "pressure", "value": 3.5,
                         "unit": "bar"},
            "ok": {"topic": "plant.south.valve-07.ok", "site": "south", "asset": "valve-07",
                   "datastream": "ok", "value": True},
            "mode": {"topic": "plant.south.valve-07.mode", "site": "south",
                     "asset": "valve-07", "datastream": "mode", "value": "open"}}
        [letter] = await dead_letters(engine, name)
        assert letter.data == b"\xff\xfe not utf-8"
        assert letter.headers["dead-letter-reason"] == "payload is not UTF-8 text"
        assert letter.headers["amqp-routing-key"] == "plant.south.valve-07.state"
        # everything was acked: the queue is empty
        async with channel() as ch:
            declared = await ch.declare_queue(queue, passive=True)
            assert declared.declaration_result.message_count == 0


async def test_a_publishers_message_id_is_stored_once(broker: str) -> None:
    exchange, queue = unique("lakeport-test-x"), unique("lakeport-test-q")
    async with deleted_after([exchange], [queue]), open_engine(memory()) as engine:
        async with bridging(engine, exchange=exchange, queue=queue, subscribe=["#"],
                            to_topic="readings") as bridge:
            for value in (1, 1, 2):
                await publish(exchange, [("a", str(value).encode())],
                              message_id=f"reading-{value}")
            assert await eventually(lambda: bridge.status.messages_out == 2
                                    and bridge.status.duplicates == 1), bridge.status.line()
        assert [p["value"] for p in await read_all(engine, "readings")] == [1, 2]


async def test_a_redelivered_message_is_stored_once(broker: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops after the produce and before the ack: the broker delivers the
    batch again (redelivered) and the msg_ids drop it."""
    from lakeport.errors import Unavailable
    from lakeport.routing.amqp import AmqpBridge

    original, dropped = AmqpBridge._store, []

    async def die_before_the_first_ack(self: Any, batch: list[Any], *args: Any) -> None:
        await original(self, batch, *args)
        if not dropped:
            dropped.extend(batch)
            raise Unavailable("test: the bridge went away before its ack")

    monkeypatch.setattr(AmqpBridge, "_store", die_before_the_first_ack)
    exchange, queue = unique("lakeport-test-x"), unique("lakeport-test-q")
    async with deleted_after([exchange], [queue]), open_engine(memory()) as engine:
        async with channel() as ch:  # the queue holds them all before the bridge starts
            target = await ch.declare_exchange(exchange, "topic", durable=True)
            bound = await ch.declare_queue(queue, durable=True)
            await bound.bind(target, "#")
        await publish(exchange, [("pump", f'{{"id": {i}}}'.encode()) for i in range(20)])
        async with bridging(engine, exchange=exchange, queue=queue, subscribe=["#"],
                            to_topic="readings", retry_first=0.1) as bridge:
            assert await eventually(lambda: bridge.status.messages_out == 20
                                    and bridge.status.duplicates == len(dropped) > 0), \
                bridge.status.line()
            assert bridge.status.connects >= 2
        ids = [p["id"] for p in await read_all(engine, "readings")]
    assert sorted(ids) == list(range(20)), ids


async def test_a_queue_alone_is_read_as_it_is(broker: str) -> None:
    queue = unique("lakeport-test-q")
    async with deleted_after([], [queue]), open_engine(memory()) as engine:
        async with channel() as ch:
            await ch.declare_queue(queue, durable=True)
            await ch.default_exchange.publish(aio_pika.Message(b'{"value": 7}'), queue)
        async with bridging(engine, queue=queue, to_topic="readings",
                            topic_field=None) as bridge:
            assert await eventually(lambda: bridge.status.messages_out == 1), \
                bridge.status.line()
        assert await read_all(engine, "readings") == [{"value": 7}]


# -- a bridge killed with SIGKILL while persistent messages are published ----------------------
class Lines:
    """A process's stderr lines, read as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process, self.lines = process, []
        assert process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def has(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in self.lines)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._thread.join(5)
        return code


def cli_bridge(*args: str) -> Lines:
    return Lines(subprocess.Popen([*LAKEPORT, "bridge", "run", *args], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))


async def _stored(topic: str) -> list[Any]:
    async with open_engine() as engine:
        with contextlib.suppress(Exception):
            return await read_all(engine, topic)
    return []


@pytest.mark.crash
def test_kill_9_while_messages_are_published_loses_none_and_stores_none_twice(
        broker: str) -> None:
    """Every message the broker confirmed to the publisher is in the topic once (by the id in
    its payload), though the bridge was killed mid-stream and started again."""
    exchange, queue, topic = unique("lakeport-test-x"), unique("lakeport-test-q"), "raw"
    args = (broker, "--exchange", exchange, "--queue", queue, "--subscribe", "plant.#",
            "--to", topic, "--fields", "plant.{site}.{asset}.{datastream}", "--name", "killed")
    stored = lambda: len(asyncio.run(_stored(topic)))  # noqa: E731
    published: list[int] = []

    async def publish_all() -> None:
        async with channel() as ch:
            target = await ch.get_exchange(exchange)
            for start in range(0, KILL_MESSAGES, 250):
                await asyncio.gather(*(target.publish(aio_pika.Message(
                    orjson.dumps({"id": i, "value": i * 0.5}),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    "plant.north.pump-01.temperature")
                    for i in range(start, min(KILL_MESSAGES, start + 250))))
                published.append(min(KILL_MESSAGES, start + 250))
                await asyncio.sleep(0.02)  # a steady stream, not one burst

    with cleanup([exchange], [queue]):
        first = cli_bridge(*args)
        second = None
        try:
            assert wait_until(lambda: first.has("^connected: ")), first.text
            thread = threading.Thread(target=lambda: asyncio.run(publish_all()))
            thread.start()
            assert wait_until(lambda: stored() >= KILL_MESSAGES // 5, 30), first.text
            first.process.kill()  # SIGKILL: no goodbye, no ack after this point
            first.process.wait(10)
            at_kill = stored()
            second = cli_bridge(*args)
            thread.join(60)
            assert published and published[-1] == KILL_MESSAGES, "the publisher did not finish"
            assert at_kill < KILL_MESSAGES, "the kill came after the last message"
            assert wait_until(lambda: stored() >= KILL_MESSAGES, 60), second.text
            assert second.stop() == 0, second.text
        finally:
            first.stop()
            if second is not None:
                second.stop()
        ids = Counter(p["id"] for p in asyncio.run(_stored(topic)))
        twice = sorted(i for i, n in ids.items() if n > 1)
        assert not twice, f"{len(twice)} messages stored twice, e.g. {twice[:5]}"
        assert set(ids) == set(range(KILL_MESSAGES))

        async def left() -> int:
            async with channel() as ch:
                declared = await ch.declare_queue(queue, passive=True)
                return declared.declaration_result.message_count

        assert asyncio.run(left()) == 0, "the restarted bridge did not ack everything"
    final = re.search(r"stopped: .*: ([\d,]+) in", second.text)
    assert final and int(final.group(1).replace(",", "")) > 0, second.text
    print(f"\nkilled at {at_kill:,} of {KILL_MESSAGES:,} stored; after the restart: {final[0]}")


# -- egress -----------------------------------------------------------------------------------
async def test_egress_publishes_with_confirms_and_acks_after_them(broker: str) -> None:
    exchange, queue, name = unique("lakeport-test-x"), unique("lakeport-test-q"), unique("out")
    async with deleted_after([exchange], [queue]), open_engine(memory()) as engine:
        async with channel() as ch:
            target = await ch.declare_exchange(exchange, "topic", durable=True)
            bound = await ch.declare_queue(queue, durable=True)
            await bound.bind(target, "plant.*.avg")
        async with engine.producer("averages", "averages") as producer:
            await producer.produce_many([{"asset": f"pump-{i % 3}", "value": i}
                                         for i in range(300)]
                                        + [{"value": "no asset"}, {"asset": "a.b", "value": 0}])
        async with bridging(engine, exchange=exchange, from_topic="averages",
                            publish="plant.{asset}.avg", name=name, batch_size=100) as bridge:
            assert await eventually(lambda: bridge.status.messages_out == 300
                                    and bridge.status.dead_letters == 2), bridge.status.line()
        info = await engine.topic_info("averages")
        assert next(c.acked for c in info.consumers if c.name == name) == 302
        letters = {orjson.loads(m.data)["value"]: m.headers["dead-letter-reason"]
                   for m in await dead_letters(engine, name)}
        assert letters == {
            "no asset": "no field 'asset' for the topic template 'plant.{asset}.avg'",
            0: "the AMQP broker could not route it to a queue (routing key 'plant.a.b.avg': "
               "NO_ROUTE)"}
        received = []
        async with channel() as ch:
            reader = await ch.declare_queue(queue, passive=True)
            while (message := await reader.get(no_ack=True, fail=False)) is not None:
                received.append(message)
    assert Counter(m.routing_key for m in received) == {
        "plant.pump-0.avg": 100, "plant.pump-1.avg": 100, "plant.pump-2.avg": 100}
    assert [orjson.loads(m.body)["value"] for m in received] == list(range(300))
    assert {m.delivery_mode for m in received} == {aio_pika.DeliveryMode.PERSISTENT}
    assert received[0].message_id == "lakeport:averages:1"


async def test_the_publisher_returns_the_refused(broker: str) -> None:
    exchange, queue = unique("lakeport-test-x"), unique("lakeport-test-q")
    async with deleted_after([exchange], [queue]):
        async with channel() as ch:
            target = await ch.declare_exchange(exchange, "direct", durable=True)
            bound = await ch.declare_queue(queue, durable=True)
            await bound.bind(target, "alarms")
        bridge = open_bridge(dict(url=BROKER, exchange=exchange, exchange_type="direct",
                                  from_topic="t", publish="alarms"))
        publisher = await bridge.publisher()
        try:
            refused = await publisher.publish([("alarms", b"1"), ("nobody", b"2"),
                                               ("alarms", b"3")])
        finally:
            await publisher.close()
        assert refused == [(1, "the AMQP broker could not route it to a queue (routing key "
                               "'nobody': NO_ROUTE)")]
        async with channel() as ch:
            reader = await ch.declare_queue(queue, passive=True)
            bodies = []
            while (message := await reader.get(no_ack=True, fail=False)) is not None:
                bodies.append(message.body)
        assert bodies == [b"1", b"3"]

    # a missing exchange is declared (durable, of the configured type)
    missing = unique("lakeport-test-new")
    async with deleted_after([missing], []):
        publisher = await open_bridge(dict(url=BROKER, exchange=missing, exchange_type="fanout",
                                           from_topic="t", publish="any")).publisher()
        await publisher.close()
        async with channel() as ch:
            await ch.declare_exchange(missing, "fanout", durable=True, passive=True)


# -- bad input --------------------------------------------------------------------------------
async def test_an_unreachable_broker_is_retried_and_said(broker: str) -> None:
    port = free_port()
    async with open_engine(memory()) as engine:
        bridge = open_bridge(dict(url=f"amqp://127.0.0.1:{port}", exchange="x",
                                  subscribe=["#"], to_topic="raw", retry_first=0.2,
                                  retry_max=1.0))
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop, engine))
        try:
            assert await eventually(lambda: bridge.status.state == "retrying")
            status = bridge.status.to_dict()
            assert status["connected"] is False
            assert status["last_error"] == (f"cannot reach the AMQP broker 127.0.0.1:{port}: "
                                            "Connection refused")
            assert 0 < status["retry_in"] <= 1.1
            assert "retrying in" in bridge.status.line()
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
    assert bridge.status.state == "stopped"


def test_a_wrong_password_a_missing_vhost_and_a_secret(broker: str) -> None:
    bridge = open_bridge(dict(url=BROKER, exchange="x", subscribe=["#"], to_topic="raw",
                              username="guest", password="guess"))
    with pytest.raises(Unauthorized, match=r"^the AMQP broker 127.0.0.1:5672 refused the login "
                       r"for user 'guest'$"):
        asyncio.run(bridge.healthcheck())
    done = subprocess.run([*LAKEPORT, "bridge", "run", "amqp://guest:guess@127.0.0.1:5672",
                           "--exchange", "x", "--subscribe", "#", "--to", "raw"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        "error: the AMQP broker 127.0.0.1:5672 refused the login for user 'guest'"]
    assert "guess" not in done.stderr

    missing = open_bridge(dict(url=f"{BROKER}/no-such-vhost", queue="q", to_topic="raw"))
    with pytest.raises(Terminal, match=r"^the AMQP broker 127.0.0.1:5672 refused to open vhost "
                       r"'no-such-vhost' for user 'guest'"):
        asyncio.run(missing.healthcheck())

    done = subprocess.run([*LAKEPORT, "secret", "create", "amqp-password", "--value", "guest"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    asyncio.run(open_bridge(dict(url=BROKER, queue="q", to_topic="raw", username="guest",
                                 password="<% secrets.amqp-password %>")).healthcheck())


def test_bad_options_are_one_line_errors() -> None:
    for args, message in (
        (["amqp://127.0.0.1", "--subscribe", "a.#", "--to", "t"],
         "error: AMQP binding keys (subscribe) need an exchange to bind to: give the "
         "exchange, or only a queue to read it as it is"),
        (["amqp://127.0.0.1", "--from", "t", "--publish", "out.#"],
         "error: bad publish template 'out.#': a topic with {field} parts, no * or #"),
        (["amqp://127.0.0.1", "--exchange", "x", "--exchange-type", "fan", "--subscribe", "a",
          "--to", "t"],
         "error: bad bridge option exchange_type: Input should be 'direct', 'topic', "
         "'fanout' or 'headers'"),
        (["amqp://127.0.0.1?heartbeat=5", "--queue", "q", "--to", "t"],
         "error: an AMQP broker URL takes no options: use amqp://host:port/vhost"),
    ):
        done = subprocess.run([*LAKEPORT, "bridge", "run", *args], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
        assert (done.returncode, done.stderr.strip()) == (1, message), done.stderr
