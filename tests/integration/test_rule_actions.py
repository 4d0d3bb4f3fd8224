"""Rule actions at work under a RuleRunner: a webhook (a real HTTP server on a free port) that
fails and recovers, one that fails for good (dead letters, the block still acked, the other
actions unharmed), the observation writer seam, and a statement change that starts the
windows empty instead of restoring another statement's state."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from conftest import require_service
from lakeport.errors import Invalid, Transient
from lakeport.routing.actions import ObservationsSink, WebhookSink, rule_runner
from lakeport.routing.rule import Rule
from lakeport.routing.runner import RuleRunner
from lakeport.routing.spec import RuleSpec, WebhookAction
from lakeport.streams.base import Engine
from lakeport.streams.registry import open_engine
from servers import port_open
from waiting import eventually

HOT = ('SELECT asset, value FROM "raw-sensor-data" WHERE datastream = \'temperature\' '
       "AND value > 80")
BASE_MS = 1_767_225_600_000


class Hook:
    """An HTTP endpoint that answers the scripted statuses in turn (then 200) and keeps
    every body it was sent."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.bodies: list[Any] = []
        self.answers: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = hook.statuses.pop(0) if hook.statuses else 200
                hook.answers.append(status)
                if status == 200:
                    hook.bodies.append(orjson.loads(body))
                hook.headers = dict(self.headers)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.headers: dict[str, str] = {}
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def hook_factory() -> Iterator[Any]:
    hooks: list[Hook] = []

    def make(statuses: list[int]) -> Hook:
        hook = Hook(statuses)
        threading.Thread(target=hook.server.serve_forever, daemon=True).start()
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.server.shutdown()
        hook.server.server_close()


def memory_url() -> str:
    return f"memory://actions-{uuid.uuid4().hex}"


async def produce(engine: Engine, payloads: list[Any], topic: str = "raw-sensor-data") -> None:
    async with engine.producer("sim", topic) as producer:
        await producer.produce_many(payloads)


async def read_all(engine: Engine, topic: str) -> list[Any]:
    async with engine.consumer("check", topic, position="beginning", follow=False,
                               ephemeral=True) as consumer:
        return [m async for m in consumer]


def readings() -> list[dict[str, Any]]:
    return [{"asset": "p1", "datastream": "temperature", "value": 85},
            {"asset": "p2", "datastream": "temperature", "value": 20},
            {"asset": "p3", "datastream": "temperature", "value": 91.5}]


async def test_webhook_retries_until_it_answers(hook_factory: Any) -> None:
    hook = hook_factory([500, 503])
    spec = RuleSpec(name="hot", sql=HOT, actions=[
        {"type": "webhook", "url": hook.url, "retries": 3, "headers": {"x-token": "t1"}},
        {"type": "topic", "topic": "hot"}])
    async with open_engine(memory_url()) as engine:
        await produce(engine, readings())
        async with rule_runner(spec, engine) as runner:
            assert await runner.step(100, timeout=5) == 3
            info = await runner.info()
        assert hook.answers == [500, 503, 200]
        assert hook.bodies == [[{"asset": "p1", "value": 85}, {"asset": "p3", "value": 91.5}]]
        assert hook.headers.get("x-token") == "t1"
        assert [orjson.loads(m.data) for m in await read_all(engine, "hot")] == hook.bodies[0]
        assert info["acked"] == 3 and info["action_errors"] == {}
        assert (await engine.topic_info("dead-letter.rule.hot")).last_seqno == 0


@pytest.mark.parametrize(("statuses", "retries", "reason"), [
    ([500] * 10, 2, "answered 500 (after 2 retries)"),
    ([400], 5, "answered 400"),  # a client error is not retried
])
async def test_webhook_that_keeps_failing_dead_letters_its_rows(
        hook_factory: Any, statuses: list[int], retries: int, reason: str) -> None:
    hook = hook_factory(statuses)
    spec = RuleSpec(name="hot", sql=HOT, actions=[
        {"type": "webhook", "url": hook.url, "retries": retries},
        {"type": "topic", "topic": "hot"}])
    async with open_engine(memory_url()) as engine:
        await produce(engine, readings())
        async with rule_runner(spec, engine) as runner:
            assert await runner.step(100, timeout=5) == 3
            info = await runner.info()
        assert len(hook.answers) == (retries + 1 if statuses[0] >= 500 else 1)
        label = f"webhook:{hook.url}"
        assert info["action_errors"] == {label: 2} and info["acked"] == 3
        dead = await read_all(engine, "dead-letter.rule.hot")
        assert [orjson.loads(m.data) for m in dead] == [{"asset": "p1", "value": 85},
                                                        {"asset": "p3", "value": 91.5}]
        headers = dead[0].headers
        assert headers["dead-letter-action"] == label
        assert headers["dead-letter-rule"] == "hot"
        assert headers["dead-letter-topic"] == "raw-sensor-data"
        assert reason in headers["dead-letter-reason"]
        # the topic action got every row all the same
        assert len(await read_all(engine, "hot")) == 2


async def test_webhook_unreachable_is_retried_then_dead_lettered() -> None:
    sink = WebhookSink(WebhookAction(url="http://127.0.0.1:9/nothing", retries=1, timeout=2))
    try:
        failed = await sink.send([{"a": 1}], [b'{"a":1}'], ["id-1"])
    finally:
        await sink.close()
    assert len(failed) == 1 and failed[0][0] == 0
    assert "ConnectError" in failed[0][1] and "after 1 retries" in failed[0][1]


async def test_webhook_url_must_be_http() -> None:
    with pytest.raises(Invalid, match="webhook url 'ftp://x': use http:// or https://"):
        WebhookSink(WebhookAction(url="ftp://x"))


async def test_observation_writer_refusals_become_dead_letters() -> None:
    seen: list[list[dict[str, Any]]] = []

    async def writer(rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
        seen.append(rows)
        return [(i, "value is not a number") for i, r in enumerate(rows) if r["asset"] == "p3"]

    spec = RuleSpec(name="obs", sql='SELECT asset, datastream, value FROM "raw-sensor-data" '
                    "WHERE value > 80", actions=[{"type": "observations"}])
    async with open_engine(memory_url()) as engine:
        await produce(engine, readings())
        async with rule_runner(spec, engine, observations=writer) as runner:
            await runner.step(100, timeout=5)
            info = await runner.info()
        assert [r["asset"] for r in seen[0]] == ["p1", "p3"]
        assert info["action_errors"] == {ObservationsSink.label: 1}
        dead = await read_all(engine, "dead-letter.rule.obs")
        assert [orjson.loads(m.data)["asset"] for m in dead] == ["p3"]


def test_observations_action_needs_a_server() -> None:
    spec = RuleSpec(name="obs", sql=HOT, actions=[{"type": "observations"}])
    with pytest.raises(Invalid, match="needs the server's observation store"):
        rule_runner(spec, None)  # type: ignore[arg-type]


def test_rule_spec_errors_name_the_field() -> None:
    with pytest.raises(Invalid, match=r"bad rule field actions\.0\.webhook\.url: Field required"):
        RuleSpec.parse(name="x", sql=HOT, actions=[{"type": "webhook"}])
    with pytest.raises(Invalid, match="bad rule field actions: List should have at least 1"):
        RuleSpec.parse(name="x", sql=HOT, actions=[])
    with pytest.raises(Invalid, match=r"bad rule field actions\.0: Input tag 'ftp'"):
        RuleSpec.parse(name="x", sql=HOT, actions=[{"type": "ftp"}])


async def test_a_new_statement_starts_its_windows_empty() -> None:
    def window(sql_agg: str) -> Rule:
        return Rule(f'SELECT asset, {sql_agg} AS v FROM "raw-sensor-data" '
                    "GROUP BY asset, TUMBLING(10s)")

    def at(second: float, value: float) -> dict[str, Any]:
        return {"asset": "a", "value": value, "time": BASE_MS + int(second * 1000)}

    async with open_engine(memory_url()) as engine:
        await produce(engine, [at(1, 1.0), at(2, 3.0)])
        async with RuleRunner(engine, window("sum(value)"), "w", "out") as runner:
            await runner.step(100, timeout=5)
        # the same statement restores its window: 1 + 3 + 5 = 9 when it closes
        await produce(engine, [at(3, 5.0), at(12, 0.0)])
        async with RuleRunner(engine, window("sum(value)"), "w", "out") as runner:
            await runner.step(100, timeout=5)
        assert [orjson.loads(m.data)["v"] for m in await read_all(engine, "out")] == [9.0]
        # another statement does not take that state over: its windows start empty
        await produce(engine, [at(13, 2.0), at(25, 0.0)])
        async with RuleRunner(engine, window("max(value)"), "w", "out") as runner:
            await runner.step(100, timeout=5)
        assert [orjson.loads(m.data)["v"] for m in await read_all(engine, "out")] == [9.0, 2.0]


async def test_passing_trouble_reopens_the_rule_and_loses_or_doubles_nothing() -> None:
    """An action that fails twice with a Transient error: the runner reopens, evaluates the
    block again from the saved window state, and each window goes out once."""
    calls: list[int] = []
    stored: list[dict[str, Any]] = []
    errors: list[str | None] = []

    async def writer(rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
        calls.append(len(rows))
        if len(calls) <= 2:
            raise Transient("observation store unreachable")
        stored.extend(rows)
        return []

    spec = RuleSpec(name="flaky", sql='SELECT asset, datastream, sum(value) AS value FROM '
                    '"raw-sensor-data" GROUP BY asset, datastream, TUMBLING(10s)',
                    actions=[{"type": "observations"}, {"type": "topic", "topic": "sums"}])

    def at(second: float, value: float) -> dict[str, Any]:
        return {"asset": "a", "datastream": "t", "value": value,
                "time": BASE_MS + int(second * 1000)}

    async with open_engine(memory_url()) as engine:
        await produce(engine, [at(1, 1.0), at(2, 2.0)])
        runner = rule_runner(spec, engine, observations=writer)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop, idle=0.05))
        await produce(engine, [at(5, 4.0), at(11, 8.0), at(25, 0.0)])

        async def done() -> bool:
            errors.append(runner.last_error)
            return len(stored) == 2 and runner.stats.acked == 5

        deadline = asyncio.get_running_loop().time() + 20
        while not await done():
            assert asyncio.get_running_loop().time() < deadline, (calls, stored)
            await asyncio.sleep(0.02)
        stop.set()
        await task
        assert [r["value"] for r in stored] == [7.0, 8.0]
        assert [orjson.loads(m.data)["value"] for m in await read_all(engine, "sums")] == [
            7.0, 8.0]
        assert "observation store unreachable" in errors
        assert runner.last_error is None


# -- brokers: the machine's Mosquitto and RabbitMQ -------------------------------------------
def _need(port: int, name: str) -> None:
    if not port_open(port):
        require_service(name, f"no {name} at 127.0.0.1:{port}")


async def test_mqtt_action_publishes_each_row_to_its_topic() -> None:
    _need(1883, "Mosquitto")
    paho = pytest.importorskip("paho.mqtt.client")
    base = f"lp-rule-{uuid.uuid4().hex[:8]}"
    got: list[tuple[str, Any]] = []
    subscribed = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *a: c.subscribe(f"{base}/#", qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, m: got.append((m.topic, orjson.loads(m.payload)))
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        spec = RuleSpec(name="mq", sql=HOT, actions=[
            {"type": "mqtt", "url": "mqtt://127.0.0.1:1883", "publish": base + "/{asset}/hot"}])
        async with open_engine(memory_url()) as engine:
            await produce(engine, [*readings(), {"value": 99, "datastream": "temperature",
                                                 "asset": "p+9"}])
            async with rule_runner(spec, engine) as runner:
                await runner.step(100, timeout=5)
                info = await runner.info()
            assert await eventually(lambda: len(got) == 2), got
            dead = await read_all(engine, "dead-letter.rule.mq")
    finally:
        client.loop_stop()
        client.disconnect()
    assert sorted(got, key=str) == [(f"{base}/p1/hot", {"asset": "p1", "value": 85}),
                                    (f"{base}/p3/hot", {"asset": "p3", "value": 91.5})]
    # a row whose topic cannot be made (a wildcard in it) is a dead letter, the rest went on
    assert info["action_errors"] == {f"mqtt:{base}/{{asset}}/hot": 1}
    assert "field 'asset' ('p+9') would be a wildcard" in dead[0].headers["dead-letter-reason"]


async def test_amqp_action_publishes_with_confirms_and_dead_letters_the_unroutable() -> None:
    _need(5672, "RabbitMQ")
    aio_pika = pytest.importorskip("aio_pika")
    exchange, queue = f"lp-rule-x-{uuid.uuid4().hex[:8]}", f"lp-rule-q-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect("amqp://127.0.0.1:5672")
    try:
        channel = await connection.channel()
        spec = RuleSpec(name="am", sql=HOT, actions=[
            {"type": "amqp", "url": "amqp://127.0.0.1:5672", "exchange": exchange,
             "exchange_type": "topic", "routing_key": "plant.{asset}.hot"}])
        async with open_engine(memory_url()) as engine:
            await produce(engine, readings())
            async with rule_runner(spec, engine) as runner:  # declares the exchange
                bound = await channel.declare_queue(queue, auto_delete=True)
                await bound.bind(exchange, "plant.p1.*")  # p3's rows go nowhere
                await runner.step(100, timeout=5)
                info = await runner.info()
            message = await bound.get(timeout=10)
            await message.ack()
            assert orjson.loads(message.body) == {"asset": "p1", "value": 85}
            assert message.routing_key == "plant.p1.hot"
            assert await bound.get(fail=False) is None
            dead = await read_all(engine, "dead-letter.rule.am")
        assert info["action_errors"] == {f"amqp:{exchange}": 1} and info["acked"] == 3
        assert orjson.loads(dead[0].data) == {"asset": "p3", "value": 91.5}
        assert "NO_ROUTE" in dead[0].headers["dead-letter-reason"]
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()
