"""Message routing: SQL rules evaluated on message blocks, next to the same rule as a per-message
Python loop (MQTT and AMQP bridge rows are added to ``ROWS`` the same way).

Run from the repository root: ``python bench/routing.py [--quick] [--json]``.
The rule rows evaluate ``lakeport.routing.rule.Rule`` on in-memory blocks of ~100-byte JSON
messages (100,000 per block, as ``Consumer.recv_block`` hands them out): evaluation only, no
topic I/O. The end-to-end rows read the same messages from an embedded-engine topic
(``file://`` in a temporary folder) with ``recv_block``, evaluate and ack. The MQTT rows
(``_routing_mqtt.py``) publish 100-byte JSON messages through a Mosquitto of their own
(``/usr/sbin/mosquitto``, a free loopback port) to the lakeport MQTT bridge, which stores them
in an embedded-engine topic, at QoS 0 and QoS 1, next to a bare paho-mqtt subscriber that only
counts; without Mosquitto those rows say so. The AMQP row (``_routing_amqp.py``) sends
100-byte JSON messages from an embedded-engine topic through the lakeport AMQP egress bridge
to a topic exchange of the machine's RabbitMQ (127.0.0.1:5672) with publisher confirms, next
to bare aio-pika publishing the same messages with confirms; without RabbitMQ it says so.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import Console

from _routing_amqp import measure as measure_amqp
from _routing_amqp import rabbitmq_up
from _routing_mqtt import measure as measure_mqtt
from _routing_mqtt import mosquitto_path
from lakeport.routing.rule import Rule
from lakeport.streams.base import EndOfTopic
from lakeport.streams.block import BLOCK_SCHEMA, MessageBlock
from lakeport.streams.registry import open_engine
from lakeport.streams.types import Format
from topics import Results, Row, bench_main, bench_parser, machine_text, one_line, print_rows

TARGET = 1_000_000
MQTT_TARGETS = {0: 50_000, 1: 20_000}  # msgs/s of the MQTT ingest bridge at QoS 0 and 1
AMQP_TARGET = 20_000  # msgs/s of the AMQP egress bridge with publisher confirms
EKUIPER = 11_400  # msgs/s per core, LF Edge eKuiper's published figure
BLOCK = 100_000
ASSETS = 1_000
RATE = 20_000  # simulated messages per second of event time (200,000 per 10 s window)
BASE_MS = 1_767_225_600_000
FILTER_SQL = ('SELECT asset, value * 1.8 + 32 AS value_f FROM "raw" '
              "WHERE datastream = 'temperature' AND value > 80")
WINDOW_SQL = ('SELECT asset, avg(value) AS avg_value FROM "raw" '
              "GROUP BY asset, TUMBLING(10s)")


@dataclass
class Plan:
    messages: int  # per in-memory run
    repeats: int  # runs of each rule (best is shown)
    python_messages: int  # messages the per-message Python loop is timed on (whole blocks)
    e2e_messages: int  # messages in the embedded-engine topic
    mqtt_messages: int  # messages published per MQTT run (bridge and bare subscriber each)
    amqp_messages: int  # messages per AMQP egress run (bridge and bare aio-pika each)


def make_plan(quick: bool) -> Plan:
    if quick:
        return Plan(500_000, 2, 100_000, 300_000, 100_000, 20_000)
    return Plan(2_000_000, 3, 400_000, 1_000_000, 400_000, 100_000)


@dataclass
class Context:
    """What every row function gets: the plan, a progress line, a temporary folder, the
    results to add rows, figures and failed checks to, and data shared between rows."""

    plan: Plan
    say: Callable[[str], None]
    folder: Path
    results: Results
    cache: dict[str, object] = field(default_factory=dict)


RowFunction = Callable[[Context], Awaitable[None] | None]
ROWS: list[RowFunction] = []
"""The bench's rows, measured in this order; a function adds its rows to ``ctx.results``."""


def bench_row(function: RowFunction) -> RowFunction:
    ROWS.append(function)
    return function


# -- data ----------------------------------------------------------------------------------
def payloads(count: int) -> list[bytes]:
    """``count`` JSON readings of ~100 bytes in the app message format: 1,000 assets, half
    temperature (10 % of those above 80), ISO 8601 event times, ``RATE`` per second."""
    rng = np.random.default_rng(7)
    assets = rng.integers(0, ASSETS, count).tolist()
    kinds = rng.integers(0, 2, count).tolist()
    values = np.round(rng.uniform(0, 100, count), 2).tolist()
    millis = BASE_MS + np.arange(count) * 1000 // RATE
    times = np.datetime_as_string(millis.astype("datetime64[ms]"), unit="ms").tolist()
    names = [("temperature", "C"), ("pressure", "kPa")]
    return [(f'{{"asset":"pump-{a:04d}","datastream":"{names[k][0]}","value":{v},'
             f'"unit":"{names[k][1]}","time":"{t}Z"}}').encode()
            for a, k, v, t in zip(assets, kinds, values, times, strict=True)]


def blocks(data: list[bytes]) -> list[MessageBlock]:
    out = []
    stamp = BASE_MS * 1_000_000
    for start in range(0, len(data), BLOCK):
        part = data[start:start + BLOCK]
        n = len(part)
        table = pa.Table.from_arrays(
            [pa.array(np.arange(start + 1, start + n + 1)), pa.array(np.full(n, stamp)),
             pa.array(["sim"] * n), pa.array(part, pa.binary()), pa.nulls(n, pa.string()),
             pa.nulls(n, pa.string())], schema=BLOCK_SCHEMA)
        out.append(MessageBlock(table, Format.JSON))
    return out


def shared_data(ctx: Context) -> tuple[list[bytes], list[MessageBlock]]:
    if "blocks" not in ctx.cache:
        ctx.say(f"generating {ctx.plan.messages:,} messages")
        data = payloads(ctx.plan.messages)
        ctx.cache.update(data=data, blocks=blocks(data))
    return ctx.cache["data"], ctx.cache["blocks"]  # type: ignore[return-value]


# -- the per-message Python loops ----------------------------------------------------------
def python_filter(data: list[bytes]) -> list[tuple[str, float, int]]:
    out = []
    for seqno, raw in enumerate(data, start=1):
        reading = json.loads(raw)
        if reading["datastream"] == "temperature" and reading["value"] > 80:
            out.append((reading["asset"], reading["value"] * 1.8 + 32, seqno))
    return out


def python_window(data: list[bytes]) -> list[tuple[str, int, float]]:
    """A 10 s tumbling average per asset, windows emitted as event time passes them."""
    size = 10_000
    open_windows: dict[tuple[str, int], list[float]] = {}
    out: list[tuple[str, int, float]] = []
    top = current = -1
    for raw in data:
        reading = json.loads(raw)
        t = int(datetime.fromisoformat(reading["time"]).timestamp() * 1000)
        key = (reading["asset"], t - t % size)
        acc = open_windows.get(key)
        if acc is None:
            open_windows[key] = [1, reading["value"]]
        else:
            acc[0] += 1
            acc[1] += reading["value"]
        if t > top:
            top = t
            if top - top % size != current:
                current = top - top % size
                for done in [k for k in open_windows if k[1] + size <= top]:
                    count, total = open_windows.pop(done)
                    out.append((done[0], done[1], total / count))
    out += [(k[0], k[1], total / count) for k, (count, total) in open_windows.items()]
    return out


# -- measuring -----------------------------------------------------------------------------
def best_rate(ctx: Context, label: str, sql: str, data_blocks: list[MessageBlock]
              ) -> tuple[float, list[float], list[pa.Table]]:
    rates, tables = [], []
    total = sum(len(b) for b in data_blocks)
    for run in range(1, ctx.plan.repeats + 1):
        ctx.say(f"{label}: run {run}/{ctx.plan.repeats} ({total:,} messages)")
        with Rule(sql) as rule:
            tables = []
            start = time.perf_counter()
            for block in data_blocks:
                tables.append(rule.apply(block))
            if rule.windows is not None:
                tables.append(rule.flush())
            rates.append(total / (time.perf_counter() - start))
    return max(rates), rates, tables


def python_rate(ctx: Context, label: str, loop: Callable[[list[bytes]], list],
                data: list[bytes]) -> tuple[float, list]:
    ctx.say(f"{label}: the per-message Python loop ({len(data):,} messages)")
    start = time.perf_counter()
    out = loop(data)
    return len(data) / (time.perf_counter() - start), out


def ratio(rate: float | None, reference: float | None) -> str:
    if not rate or not reference:
        return ""
    r = rate / reference
    return f"{r:,.0f}x the Python loop" if r >= 10 else f"{r:.1f}x the Python loop"


def target(rate: float | None) -> str:
    return f"{'✓' if rate is not None and rate >= TARGET else '✗'} ≥ {TARGET:,}"


def spread(rates: list[float]) -> str:
    return f"best of {len(rates)}" + (f", worst {min(rates):,.0f}" if len(rates) > 1 else "")


@bench_row
def rule_filter(ctx: Context) -> None:
    data, data_blocks = shared_data(ctx)
    rate, rates, tables = best_rate(ctx, "filter rule", FILTER_SQL, data_blocks)
    py_rate, py_rows = python_rate(ctx, "filter rule", python_filter,
                                   data[:ctx.plan.python_messages])
    out = pa.concat_tables(tables)
    head = out.slice(0, len(py_rows))
    if head.column("_seqno").to_pylist() != [r[2] for r in py_rows] or not np.allclose(
            head.column("value_f").to_numpy(), [r[1] for r in py_rows]):
        ctx.results.problems.append("filter rule: rows differ from the Python loop's")
    ctx.results.rows.append(Row(
        "rule: filter + project", f"{rate:,.0f} msgs/s", ratio(rate, py_rate), target(rate),
        f"{FILTER_SQL}; {out.num_rows:,} of {len(data):,} rows out; evaluation of in-memory "
        f"blocks of {BLOCK:,} only (no topic I/O), one DuckDB thread, {spread(rates)}; Python "
        f"loop (json.loads + dict) {py_rate:,.0f} msgs/s"))
    ctx.results.figures.update(rule_filter_msgs_per_s=round(rate),
                               rule_filter_python_msgs_per_s=round(py_rate),
                               rule_filter_ratio=round(rate / py_rate, 1))


@bench_row
def rule_window(ctx: Context) -> None:
    data, data_blocks = shared_data(ctx)
    rate, rates, tables = best_rate(ctx, "window rule", WINDOW_SQL, data_blocks)
    py_rate, expected = python_rate(ctx, "window rule", python_window,
                                    data[:ctx.plan.python_messages])
    out = pa.concat_tables(tables)
    with Rule(WINDOW_SQL) as rule:  # the check: the windows of the Python loop's messages
        part = ctx.plan.python_messages // BLOCK
        checked = [rule.apply(b) for b in data_blocks[:part]] + [rule.flush()]
    mine = {(r["asset"], r["_window_start"].timestamp() * 1000): r["avg_value"]
            for r in pa.concat_tables(checked).to_pylist()}
    theirs = {(a, float(ws)): v for a, ws, v in expected}
    if mine.keys() != theirs.keys() or any(not math.isclose(mine[k], theirs[k], rel_tol=1e-9)
                                           for k in theirs):
        ctx.results.problems.append("window rule: windows differ from the Python loop's")
    ctx.results.rows.append(Row(
        "rule: 10 s tumbling avg per asset", f"{rate:,.0f} msgs/s", ratio(rate, py_rate),
        target(rate),
        f"{WINDOW_SQL}; {ASSETS:,} assets, {out.num_rows:,} windows out (those of the first "
        f"{ctx.plan.python_messages:,} messages checked against the Python loop's); evaluation "
        f"of in-memory blocks only (no topic I/O), {spread(rates)}; Python loop "
        f"{py_rate:,.0f} msgs/s"))
    ctx.results.figures.update(rule_window_msgs_per_s=round(rate),
                               rule_window_python_msgs_per_s=round(py_rate),
                               rule_window_ratio=round(rate / py_rate, 1))


@bench_row
async def rule_end_to_end(ctx: Context) -> None:
    """Both rules reading an embedded-engine topic with recv_block, acking each block."""
    count = ctx.plan.e2e_messages
    data = payloads(count)
    try:
        async with open_engine((ctx.folder / "topics").as_uri()) as engine:
            await engine.create_topic("raw")
            ctx.say(f"end to end: producing {count:,} messages to an embedded topic")
            async with engine.producer("bench", "raw") as producer:
                for block in blocks(data):
                    await producer.produce_block(block)
            for label, sql in (("filter", FILTER_SQL), ("window", WINDOW_SQL), ("read", None)):
                ctx.say(f"end to end: {label}")
                rule = Rule(sql) if sql else None
                seen = 0
                async with engine.consumer(f"rule-{label}", "raw", position="beginning",
                                           follow=False) as consumer:
                    start = time.perf_counter()
                    while True:
                        try:
                            block = await consumer.recv_block(BLOCK, timeout=10.0)
                        except EndOfTopic:
                            break
                        if rule is not None:
                            rule.apply(block)
                        seen += len(block)
                        await consumer.ack(block.last_seqno)
                    ctx.cache[label] = seen / (time.perf_counter() - start)
                if rule is not None:
                    rule.close()
    except Exception as exc:  # the in-memory rows still count
        ctx.results.rows.append(Row("rule: end to end", "n/a", notes=one_line(exc)))
        return
    read = ctx.cache["read"]
    for label in ("filter", "window"):
        rate = ctx.cache[label]
        ctx.results.rows.append(Row(
            f"rule: {label}, topic → rule (e2e)", f"{rate:,.0f} msgs/s",
            f"{rate / read:.2f}x of reading alone", target(rate),
            f"embedded engine (file://, temporary folder): recv_block({BLOCK:,}) + evaluate + "
            f"ack, {count:,} messages; reading and acking alone: {read:,.0f} msgs/s"))
        ctx.results.figures[f"rule_{label}_e2e_msgs_per_s"] = round(rate)
    ctx.results.figures["topic_read_blocks_msgs_per_s"] = round(read)


async def mqtt_ingest(ctx: Context, qos: int) -> None:
    """MQTT → the lakeport bridge → an embedded-engine topic, next to a bare paho-mqtt
    subscriber that only counts, at ``qos``, each against a fresh Mosquitto."""
    goal = MQTT_TARGETS[qos]
    label = f"mqtt: ingest QoS {qos} → topic"
    key = f"mqtt_qos{qos}_msgs_per_s"
    if mosquitto_path() is None:
        ctx.results.rows.append(Row(label, "n/a", target=f"≥ {goal:,}", notes=(
            "not measured: Mosquitto is not installed (apt-get install mosquitto)")))
        ctx.results.figures.update({key: None, f"mqtt_qos{qos}_ratio": None})
        return
    count = ctx.plan.mqtt_messages
    ctx.say(f"MQTT QoS {qos}: bare paho subscriber, then the bridge ({count:,} messages each)")
    try:
        bridge, bare = await measure_mqtt(qos, count, ctx.folder / f"mqtt-q{qos}")
    except Exception as exc:  # the other rows still count
        ctx.results.rows.append(Row(label, "n/a", target=f"≥ {goal:,}", notes=one_line(exc)))
        ctx.results.figures.update({key: None, f"mqtt_qos{qos}_ratio": None})
        return
    for who, outcome in (("bridge", bridge), ("bare paho", bare)):
        if outcome.error:
            ctx.results.problems.append(f"MQTT QoS {qos}, {who}: {outcome.error}")
    rate = bridge.rate if not bridge.error else None
    bare_rate = bare.rate if not bare.error else None
    share = rate / bare_rate if rate and bare_rate else None
    acked = ("PUBACK to the broker once the batch is durable in the topic, persistent session, "
             "msg_ids for dedup" if qos else "no acks, no msg_ids")
    ctx.results.rows.append(Row(
        label, "n/a" if rate is None else f"{rate:,.0f} msgs/s",
        f"{share:.2f}x the bare paho subscriber" if share else "",
        f"{'✓' if rate is not None and rate >= goal else '✗'} ≥ {goal:,}",
        f"{count:,} 100-byte JSON messages on 100 topics from a raw-socket publisher → "
        f"Mosquitto → open_bridge(mqtt://, fields {'{site}/{asset}/{datastream}'}) → "
        f"embedded topic (file://), durable; {acked}; first message in → last stored. Bare "
        f"paho-mqtt subscriber at QoS {qos}, callback only counts: "
        + ("n/a" if bare_rate is None else f"{bare_rate:,.0f} msgs/s")))
    ctx.results.figures.update({
        key: None if rate is None else round(rate),
        f"mqtt_qos{qos}_bare_msgs_per_s": None if bare_rate is None else round(bare_rate),
        f"mqtt_qos{qos}_ratio": None if share is None else round(share, 2)})


@bench_row
async def mqtt_qos0(ctx: Context) -> None:
    await mqtt_ingest(ctx, 0)


@bench_row
async def mqtt_qos1(ctx: Context) -> None:
    await mqtt_ingest(ctx, 1)


@bench_row
async def amqp_egress(ctx: Context) -> None:
    """An embedded-engine topic → the AMQP egress bridge → RabbitMQ, with publisher confirms,
    next to bare aio-pika publishing the same messages the same way."""
    label, goal = "amqp: egress topic → exchange, confirms", f"≥ {AMQP_TARGET:,}"
    figures = ("amqp_egress_msgs_per_s", "amqp_egress_bare_msgs_per_s", "amqp_egress_ratio")
    if not rabbitmq_up():
        ctx.results.rows.append(Row(label, "n/a", target=goal, notes=(
            "not measured: no RabbitMQ at 127.0.0.1:5672")))
        ctx.results.figures.update(dict.fromkeys(figures))
        return
    count = ctx.plan.amqp_messages
    data = shared_data(ctx)[0][:count]
    keys = [f"plant.{p['asset']}.{p['datastream']}" for p in map(json.loads, data)]
    ctx.say(f"AMQP egress: bare aio-pika, then the bridge ({count:,} messages each)")
    try:
        bridge, bare = await measure_amqp(data, keys, ctx.folder / "amqp")
    except Exception as exc:  # the other rows still count
        ctx.results.rows.append(Row(label, "n/a", target=goal, notes=one_line(exc)))
        ctx.results.figures.update(dict.fromkeys(figures))
        return
    for who, outcome in (("bridge", bridge), ("bare aio-pika", bare)):
        if outcome.error:
            ctx.results.problems.append(f"AMQP egress, {who}: {outcome.error}")
    rate = bridge.rate if not bridge.error else None
    bare_rate = bare.rate if not bare.error else None
    share = rate / bare_rate if rate and bare_rate else None
    ctx.results.rows.append(Row(
        label, "n/a" if rate is None else f"{rate:,.0f} msgs/s",
        f"{share:.2f}x bare aio-pika" if share else "",
        f"{'✓' if rate is not None and rate >= AMQP_TARGET else '✗'} {goal}",
        f"{count:,} 100-byte JSON messages in an embedded topic (file://) → open_bridge(amqp://, "
        "publish 'plant.{asset}.{datastream}') → RabbitMQ topic exchange → a durable queue "
        "bound by '#'; persistent, mandatory, publisher confirms, a batch of 10,000 published "
        "at once, the topic acked after the confirms; connect → last confirmed. Bare aio-pika, "
        "the same messages and batches: " + ("n/a" if bare_rate is None
                                               else f"{bare_rate:,.0f} msgs/s")
        + ("" if bridge.broker_cores is None else
           f". CPU while the bridge ran: RabbitMQ {bridge.broker_cores:.2f} cores, the bridge "
           f"{bridge.own_cores:.2f}")))
    ctx.results.figures.update({
        figures[0]: None if rate is None else round(rate),
        figures[1]: None if bare_rate is None else round(bare_rate),
        figures[2]: None if share is None else round(share, 2),
        "amqp_egress_broker_cores": None if bridge.broker_cores is None
        else round(bridge.broker_cores, 2)})


# -- running -------------------------------------------------------------------------------
async def run(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    results = Results()
    with tempfile.TemporaryDirectory(prefix="lakeport-bench-routing-", dir=args.dir) as tmp:
        ctx = Context(make_plan(args.quick), say, Path(tmp), results)
        for function in ROWS:
            outcome = function(ctx)
            if inspect.isawaitable(outcome):
                await outcome
    return results


def render(console: Console, results: Results, args: argparse.Namespace, elapsed: float) -> None:
    plan = make_plan(args.quick)
    print_rows(
        console, results.rows,
        title="lakeport routing: rules on message blocks, MQTT ingest, AMQP egress",
        caption=(f"All rows measured in this run. ~100-byte JSON readings, {ASSETS:,} assets; "
                 "a rule evaluates each block in DuckDB (one thread) with no Python object per "
                 "message; the Python loop is the same rule with json.loads and dicts, one "
                 f"message at a time, timed on {plan.python_messages:,} messages. For "
                 f"reference, not measured here: LF Edge eKuiper publishes about {EKUIPER:,} "
                 "msgs/s per core. MQTT rows: Mosquitto, the publisher and the subscriber share "
                 f"the machine; {plan.mqtt_messages:,} messages per run, one run each. "
                 + machine_text(args.quick, elapsed)),
        ratio_header="Ratio", ratio_width=24, problems=results.problems,
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "fewer messages: the whole run takes well under a minute")
    return bench_main(parser.parse_args(argv), lambda args, say: asyncio.run(run(args, say)),
                      render)


if __name__ == "__main__":
    sys.exit(main())
