"""Topic throughput and latency: the embedded engine, NATS JetStream and SQLite baselines.

Run from the repository root: ``python bench/topics.py [--quick] [--json]``.
Every row is measured in the same run on this machine with ~100-byte JSON payloads;
"durable" means a message counts only once its producer was told it is on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from _sqlite_baselines import naive_sqlite_rate, sqlite_wal_batched_rate
from lakeport import tune_process
from lakeport.streams.base import EndOfTopic, Engine, Producer
from lakeport.streams.registry import open_engine

HERE = Path(__file__).resolve().parent
BATCH = 10_000  # messages per produce_many call and per recv_batch
WINDOW = 5_000  # produce() calls in flight from one task
TARGETS = {"produce_many": 1_000_000, "produce": 200_000, "consume": 1_000_000}
LATENCY_RATE = 10_000
LATENCY_BATCH = 50  # one produce_many of 50 messages every 5 ms


def payload(index: int) -> dict[str, Any]:
    """A 100-byte JSON sensor reading (``orjson.dumps`` length is exactly 100)."""
    cents = 2001 + index % 997
    if cents % 10 == 0:
        cents += 1  # keep two decimals so every payload has the same length
    return {
        "asset": f"pump-{index % 1000:04d}",
        "datastream": "temperature",
        "value": cents / 100,
        "unit": "degC",
        "seq": 100_000 + index % 900_000,
        "q": "good",
    }


@dataclass
class Row:
    """One line of the result table."""

    workload: str
    result: str
    ratio: str = ""
    target: str = ""
    notes: str = ""


@dataclass
class Results:
    """What a bench measured: table rows, the ``--json`` figures, the checks that failed."""

    rows: list[Row] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)  # the --json keys
    filesystem: str = "unknown"
    problems: list[str] = field(default_factory=list)


def mark(ok: bool) -> str:
    """✓ when a target is met, else ✗."""
    return "✓" if ok else "✗"


def rate_text(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:,.0f} msgs/s"


def ratio_text(rate: float | None, reference: float | None, what: str) -> str:
    if not rate or not reference:
        return ""
    ratio = rate / reference
    slower = f"\n{1 / ratio:,.0f}x slower" if ratio < 0.5 else ""
    return f"{ratio:.2g}x of {what}{slower}"


def target_text(rate: float | None, target: int) -> str:
    mark = "✓" if rate is not None and rate >= target else "✗"
    return f"{mark} ≥ {target:,}"


# -- topic workloads (any engine) ---------------------------------------------------------
async def produce_many_rate(producer: Producer, batch: list[dict], total: int) -> float:
    """Two tasks call ``produce_many(batch)`` in a loop until ``total`` are durable."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            take = min(len(batch), remaining)
            remaining -= take
            await producer.produce_many(batch if take == len(batch) else batch[:take])

    start = time.perf_counter()
    await asyncio.gather(worker(), worker())
    return total / (time.perf_counter() - start)


async def produce_one_rate(producer: Producer, payloads: list[dict], total: int) -> float:
    """One task calls ``produce()`` per message with a window of ``WINDOW`` in flight."""
    pending: deque[Awaitable[int]] = deque()
    size = len(payloads)
    start = time.perf_counter()
    for index in range(total):
        # ensure_future: a future stays as it is; a coroutine starts running now
        pending.append(asyncio.ensure_future(producer.produce(payloads[index % size])))
        if len(pending) >= WINDOW:
            await pending.popleft()
    while pending:
        await pending.popleft()
    return total / (time.perf_counter() - start)


async def consume_rate(engine: Engine, topic: str, name: str) -> tuple[float, int]:
    """Read the whole topic from the beginning with ``recv_batch`` + ``ack`` per batch."""
    count = 0
    async with engine.consumer(name, topic, position="beginning", follow=False) as consumer:
        start = time.perf_counter()
        while True:
            try:
                batch = await consumer.recv_batch(BATCH, timeout=10.0)
            except EndOfTopic:
                break
            count += len(batch)
            await consumer.ack(batch[-1].seqno)
        elapsed = time.perf_counter() - start
    return count / elapsed, count


@dataclass
class EngineFigures:
    """msgs/s of every run of the three workloads (best = max, as the machine is noisy)."""

    runs: dict[str, list[float]] = field(
        default_factory=lambda: {"produce_many": [], "produce": [], "consume": []}
    )
    consumed: int = 0
    error: str | None = None

    def best(self, workload: str) -> float | None:
        return max(self.runs[workload], default=None)

    def spread(self, workload: str) -> str:
        """How the best figure was picked, for the notes column."""
        runs = self.runs[workload]
        if len(runs) < 2:
            return "one run"
        return f"best of {len(runs)}, median {statistics.median(runs):,.0f}"

    @property
    def produce_many(self) -> float | None:
        return self.best("produce_many")

    @property
    def produce(self) -> float | None:
        return self.best("produce")

    @property
    def consume(self) -> float | None:
        return self.best("consume")


async def measure_engine(
    engine: Engine, topic: str, many: int, single: int, repeats: int,
    say: Callable[[str], None], label: str, figures: EngineFigures | None = None,
) -> EngineFigures:
    """The three topic workloads, ``repeats`` runs each, on one fresh topic.

    ``figures`` is filled as the runs finish, so a caller that times out keeps what it got.
    """
    figures = figures if figures is not None else EngineFigures()
    batch = [payload(i) for i in range(BATCH)]
    async with engine.producer("bench-producer", topic) as producer:
        for run in range(1, repeats + 1):
            say(f"{label}: produce_many run {run}/{repeats} ({many:,} messages)")
            figures.runs["produce_many"].append(await produce_many_rate(producer, batch, many))
        for run in range(1, repeats + 1):
            say(f"{label}: produce() run {run}/{repeats} ({single:,} messages)")
            figures.runs["produce"].append(await produce_one_rate(producer, batch, single))
    for run in range(1, repeats + 1):
        say(f"{label}: consume + ack run {run}/{repeats}")
        rate, figures.consumed = await consume_rate(engine, topic, f"bench-reader-{run}")
        figures.runs["consume"].append(rate)
    return figures


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    achieved_rate: float
    received: int


# -- embedded engine -----------------------------------------------------------------------
def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts), or "unknown"."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if (
            len(parts) >= 3
            and (resolved + "/").startswith(parts[1].rstrip("/") + "/")
            and len(parts[1]) >= len(best)
        ):
            best, kind = parts[1], parts[2]
    return kind


async def latency(url: str, seconds: float, say: Callable[[str], None]) -> Latency:
    """Delays from produce in another process to receive here, at ``LATENCY_RATE``."""
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    total = int(LATENCY_RATE * seconds)
    delays: list[int] = []
    first_sent = last_sent = 0
    async with open_engine(url) as engine:
        await engine.create_topic(topic)
        async with engine.consumer("latency-reader", topic, position="beginning") as consumer:
            say(f"latency: another process produces {LATENCY_RATE:,} msgs/s for {seconds:g} s")
            child = subprocess.Popen(
                [sys.executable, str(HERE / "_latency_producer.py"), url, topic,
                 str(LATENCY_RATE), str(seconds), str(LATENCY_BATCH)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            try:
                while len(delays) < total:
                    try:
                        batch = await consumer.recv_batch(BATCH, timeout=1.0)
                    except TimeoutError:
                        if child.poll() is not None:
                            break  # the producer is gone and nothing more arrives
                        continue
                    now = time.time_ns()
                    for message in batch:
                        sent = orjson.loads(message.data)["sent"]
                        delays.append(now - sent)
                        first_sent = first_sent or sent
                        last_sent = sent
                    await consumer.ack(batch[-1].seqno)
            except BaseException:
                child.kill()
                child.communicate()
                raise
            _, stderr = child.communicate(timeout=30)
        await engine.delete_topic(topic)
    if child.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        raise RuntimeError(f"latency producer exited with code {child.returncode}: {lines[-1]}")
    if len(delays) < total:
        raise RuntimeError(f"received {len(delays):,} of {total:,} messages")
    cuts = statistics.quantiles(delays, n=100)
    span = (last_sent - first_sent) / 1e9
    return Latency(cuts[49] / 1e6, cuts[98] / 1e6, len(delays) / span if span else 0.0,
                   len(delays))


# -- the run -------------------------------------------------------------------------------
@dataclass
class Plan:
    """How many messages each row uses."""

    many: int
    single: int
    repeats: int
    nats_many: int
    nats_single: int
    nats_budget: float
    naive: int
    wal: int
    latency_seconds: float


def make_plan(quick: bool, messages: int | None, repeats: int | None) -> Plan:
    if quick:
        plan = Plan(500_000, 250_000, 3, 20_000, 10_000, 20.0, 2_000, 200_000, 3.0)
    else:
        plan = Plan(1_000_000, 500_000, 3, 100_000, 50_000, 120.0, 5_000, 1_000_000, 10.0)
    if repeats is not None:
        plan.repeats = repeats
    if messages is not None:
        plan.many, plan.single, plan.wal = messages, max(1, messages // 2), messages
    return plan


def one_line(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    text = str(exc).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    return reason if len(reason) <= 90 else reason[:87] + "..."


async def measure_nats(url: str, plan: Plan, say: Callable[[str], None]) -> EngineFigures:
    """The three workloads through the NATS engine on a fresh stream, deleted afterwards."""
    figures = EngineFigures()
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    if url.startswith("nats:") and importlib.util.find_spec("lakeport.streams.jetstream") is None:
        figures.error = "lakeport.streams.jetstream is not installed"
        return figures

    async def session() -> None:
        async with open_engine(url) as engine:
            try:
                await measure_engine(engine, topic, plan.nats_many, plan.nats_single, 1, say,
                                     "NATS", figures)
            finally:
                try:
                    await asyncio.wait_for(engine.delete_topic(topic), 10)
                except Exception:
                    pass

    try:
        await asyncio.wait_for(session(), plan.nats_budget)
    except TimeoutError:
        figures.error = f"did not finish within {plan.nats_budget:g} s"
    except Exception as exc:
        figures.error = one_line(exc)
    return figures


def embedded_rows(emb: EngineFigures, plan: Plan) -> list[Row]:
    return [
        Row("embedded · produce_many", rate_text(emb.produce_many), "",
            target_text(emb.produce_many, TARGETS["produce_many"]),
            f"2 tasks each awaiting produce_many({BATCH:,}) in a loop, merged by group "
            f"commit; {plan.many:,} msgs, {emb.spread('produce_many')}"),
        Row("embedded · produce()", rate_text(emb.produce), "",
            target_text(emb.produce, TARGETS["produce"]),
            f"one asyncio task, one produce() per message, {WINDOW:,} in flight; "
            f"{plan.single:,} msgs, {emb.spread('produce')}"),
        Row("embedded · consume + ack", rate_text(emb.consume), "",
            target_text(emb.consume, TARGETS["consume"]),
            f"recv_batch({BATCH:,}) + ack(last seqno) from the beginning, payloads left "
            f"as bytes; "
            f"{emb.consumed:,} msgs, {emb.spread('consume')}"),
    ]


def nats_rows(nats: EngineFigures, emb: EngineFigures, plan: Plan, url: str) -> list[Row]:
    rows = []
    for label, rate, ref, what, how in (
        ("NATS JetStream · produce_many", nats.produce_many, emb.produce_many, "produce_many",
         f"2 tasks x produce_many({BATCH:,}); {plan.nats_many:,} msgs"),
        ("NATS JetStream · produce()", nats.produce, emb.produce, "produce()",
         f"one task, {WINDOW:,} in flight; {plan.nats_single:,} msgs"),
        ("NATS JetStream · consume + ack", nats.consume, emb.consume, "consume",
         f"recv_batch({BATCH:,}) + ack; {nats.consumed:,} msgs"),
    ):
        if rate is None:
            rows.append(Row(label, "n/a", notes=f"n/a ({nats.error or 'not measured'}); {url}"))
        else:
            rows.append(Row(label, rate_text(rate), ratio_text(rate, ref, what),
                            notes=f"{how}, one run, fresh stream on {url}"))
    return rows


async def run(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    """Measure every row; rows that cannot be measured say why instead of failing the run."""
    plan = make_plan(args.quick, args.messages, args.repeats)
    results = Results()
    rows, figures = results.rows, results.figures
    base = Path(args.dir) if args.dir else None
    with tempfile.TemporaryDirectory(prefix="lakeport-bench-", dir=base) as tmp:
        folder = Path(tmp)
        results.filesystem = filesystem_of(folder)

        async with open_engine((folder / "embedded").as_uri()) as engine:
            emb = await measure_engine(engine, "bench", plan.many, plan.single, plan.repeats,
                                       say, "embedded")
        rows += embedded_rows(emb, plan)
        figures.update(produce_many_msgs_per_s=emb.produce_many,
                       produce_msgs_per_s=emb.produce, consume_msgs_per_s=emb.consume)

        say(f"NATS: connecting to {args.nats_url}")
        nats = await measure_nats(args.nats_url, plan, say)
        rows += nats_rows(nats, emb, plan, args.nats_url)
        figures["nats_ratio"] = (
            nats.produce_many / emb.produce_many if nats.produce_many and emb.produce_many
            else None
        )

        label = "naive SQLite · INSERT + COMMIT each"
        how = f"aiosqlite, rollback journal, synchronous=FULL; {plan.naive:,} msgs"
        say(f"naive SQLite: {plan.naive:,} x (INSERT + COMMIT)")
        try:
            naive = await naive_sqlite_rate(folder / "naive.db", plan.naive, payload)
        except Exception as exc:
            rows.append(Row(label, "n/a", notes=f"n/a ({one_line(exc)}); {how}"))
            figures["naive_ratio"] = None
        else:
            rows.append(Row(label, rate_text(naive), ratio_text(naive, emb.produce, "produce()"),
                            notes=how))
            figures["naive_ratio"] = naive / emb.produce if emb.produce else None

        wal_runs = []
        for run_no in range(1, plan.repeats + 1):
            say(f"SQLite WAL batched: run {run_no}/{plan.repeats} ({plan.wal:,} rows)")
            path = folder / f"wal-{run_no}.db"
            wal_runs.append(await asyncio.to_thread(sqlite_wal_batched_rate, path, plan.wal,
                                                  payload))
            path.unlink()
        wal = max(wal_runs)
        spread = (f"best of {len(wal_runs)}, median {statistics.median(wal_runs):,.0f}"
                  if len(wal_runs) > 1 else "one run")
        rows.append(Row(
            "design check · SQLite WAL, batched", rate_text(wal),
            ratio_text(wal, emb.produce_many, "produce_many"),
            notes=f"sqlite3 in a thread, executemany of {BATCH:,} rows per transaction, "
                  f"synchronous=FULL; {plan.wal:,} msgs, {spread}",
        ))

        label = "embedded · latency produce → receive"
        pacing = (f"{LATENCY_BATCH} msgs per produce_many every "
                  f"{LATENCY_BATCH * 1000 / LATENCY_RATE:g} ms")
        try:
            lat = await latency((folder / "latency").as_uri(), plan.latency_seconds, say)
        except Exception as exc:
            rows.append(Row(label, "n/a", notes=f"n/a ({one_line(exc)}); {pacing}"))
            figures.update(latency_p50_ms=None, latency_p99_ms=None)
        else:
            rows.append(Row(
                label, f"p50 {lat.p50_ms:.2f} ms · p99 {lat.p99_ms:.2f} ms",
                notes=f"producer in another process at {lat.achieved_rate:,.0f} msgs/s "
                      f"({pacing}), follower here; {lat.received:,} msgs",
            ))
            figures.update(latency_p50_ms=round(lat.p50_ms, 3),
                           latency_p99_ms=round(lat.p99_ms, 3))
    return results


def bench_parser(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """A parser with the options every bench takes: --quick, --json and --dir."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", action="store_true",
                        help="also print one JSON object with the key figures at the end")
    parser.add_argument("--dir", default=None,
                        help="folder for the temporary data (default: the system temp folder)")
    return parser


def machine_text(quick: bool, elapsed: float) -> str:
    """The machine and the run's length, for the end of a table caption."""
    return (f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end), "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
            f"{'--quick, ' if quick else ''}whole run {elapsed:.1f} s.")


def print_rows(console: Console, rows: list[Row], title: str, caption: str,
               ratio_header: str, ratio_width: int, problems: Sequence[str] = (),
               result_header: str = "Result") -> None:
    """The result table every bench prints (workload, result, ratio, target, how), then the
    checks that failed."""
    table = Table(title=title, caption=caption, caption_justify="left")
    table.add_column("Workload", no_wrap=True)
    table.add_column(result_header, justify="right", no_wrap=True)
    table.add_column(ratio_header, max_width=ratio_width)
    table.add_column("Target", no_wrap=True)
    table.add_column("How", overflow="fold", ratio=1)
    for row in rows:
        table.add_row(row.workload, row.result, row.ratio, row.target, row.notes)
    console.print(table)
    for problem in problems:
        console.print(f"[red]check failed:[/red] {problem}")


def render(console: Console, results: Results, args: argparse.Namespace, elapsed: float) -> None:
    print_rows(
        console, results.rows,
        title="lakeport topics: durable throughput and latency",
        caption=(
            "All rows measured in this run. 100-byte JSON payloads; durable: a message counts "
            "once its producer was told it is fsynced (embedded: one fdatasync per group "
            f"commit; data on {results.filesystem}). Embedded and SQLite WAL throughput: best "
            "of several runs, as the machine is noisy. NATS JetStream acks once its server "
            "has written the message and fsyncs on its own schedule (sync_interval). "
            + machine_text(args.quick, elapsed)
        ),
        ratio_header="Ratio to embedded", ratio_width=24,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__, "fewer messages: the whole run takes under a minute")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222",
                        help="NATS server for the JetStream rows (default: %(default)s)")
    parser.add_argument("--messages", type=int, default=None, metavar="N",
                        help="messages per embedded produce_many run (produce() uses N/2)")
    parser.add_argument("--repeats", type=int, default=None, metavar="R",
                        help="runs of each embedded and SQLite WAL throughput row (default 3)")
    args = parser.parse_args(argv)
    if args.messages is not None and args.messages < BATCH:
        parser.error(f"--messages must be at least {BATCH:,}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def bench_main(args: argparse.Namespace,
               measure: Callable[[argparse.Namespace, Callable[[str], None]], Any],
               render: Callable[[Console, Any, argparse.Namespace, float], None]) -> int:
    """Run a bench: progress on stderr (one live line in a terminal, timed lines otherwise),
    the table on stdout, the ``--json`` figures last; exit 1 when a check failed. The bench
    process is tuned as lakeport's own processes are (``lakeport.tune_process``)."""
    tune_process()
    out = Console() if sys.stdout.isatty() else Console(width=160)
    err = Console(stderr=True)
    started = time.perf_counter()
    with err.status("starting") if err.is_terminal else contextlib.nullcontext() as status:
        def say(text: str) -> None:
            if status is not None:
                status.update(text)
            else:  # not a terminal: one line per step, e.g. in CI logs
                err.print(f"[{time.perf_counter() - started:6.1f}s] {text}", highlight=False)

        try:
            results = measure(args, say)
        except KeyboardInterrupt:
            err.print("interrupted")
            return 1
    elapsed = time.perf_counter() - started
    results.figures["elapsed_s"] = round(elapsed, 1)
    render(out, results, args, elapsed)
    if args.json:
        print(orjson.dumps(results.figures).decode())
    return 1 if getattr(results, "problems", None) else 0


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), lambda args, say: asyncio.run(run(args, say)), render)


if __name__ == "__main__":
    sys.exit(main())
