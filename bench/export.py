"""Exporter throughput and memory: topic → Parquet zstd in a local folder, against the naive design.

Run from the repository root: ``python bench/export.py [--quick] [--json]``.
Every row is measured in the same run on this machine with app-format float readings of
100 assets x 10 datastreams; the exporter's figures count a row once it is in a Parquet file
in the lake folder and its seqno is acked on the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from rich.console import Console

from _export_data import produce_readings, readings
from _export_inprocess import drain_in_process, in_process_available
from _export_naive import naive_in_rate, naive_out_rate, pandas_version, prefill, row_of
from _export_runner import count_rows, export_command, lake_files, run_exporter
from lakeport.streams.registry import open_engine
from topics import (
    Results,
    Row,
    bench_main,
    bench_parser,
    filesystem_of,
    machine_text,
    mark,
    one_line,
    print_rows,
)

TARGETS = {"export": 1_000_000, "rss_mb": 300}
QUICK_SECONDS = 50.0  # --quick stops the backlog row here so the whole run stays under 60 s
IDLE = 30.0  # --until-idle of the subprocess runs (a safety net: SIGTERM once all landed)


@dataclass
class Plan:
    rows: int  # readings exported for throughput
    repeats: int  # exporter runs over them (best of)
    naive_in: int  # messages of the per-message INSERT + COMMIT sample
    naive_out: int  # rows pre-filled for SELECT → pandas → to_parquet → DELETE
    naive_batch: int  # LIMIT of each SELECT
    backlog: int  # readings in the backlog of the RSS run
    batch_rows: int | None  # --batch-rows of the exporter (None: its default)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(1_000_000, 3, 500, 200_000, 100_000, 2_000_000, None)
    else:
        plan = Plan(1_000_000, 3, 2_000, 200_000, 100_000, 10_000_000, None)
    if args.rows:
        plan.rows = args.rows
    if args.backlog:
        plan.backlog = args.backlog
    if args.repeats:
        plan.repeats = args.repeats
    if args.batch_rows:
        plan.batch_rows = args.batch_rows
    return plan


def rate_text(rate: float | None, unit: str = "rows/s") -> str:
    return "n/a" if rate is None else f"{rate:,.0f} {unit}"


def versus(export_rate: float | None, other: float) -> str:
    """How the exporter compares with ``other`` (a rate of the same unit of work)."""
    if not export_rate or not other:
        return ""
    ratio = export_rate / other
    return f"{ratio:,.1f}x faster" if ratio >= 1 else f"{1 / ratio:,.1f}x slower"


async def consumer_lag(url: str, topic: str, name: str) -> int | None:
    """The exporter's lag on ``topic`` (0 once every row is acked), None if unknown."""
    async with open_engine(url) as engine:
        info = await engine.topic_info(topic)
    for consumer in info.consumers:
        if consumer.name == name:
            return consumer.lag
    return None


def check_lake(lake: Path, expected: int) -> tuple[bool, str]:
    """Rows and distinct seqnos in the lake (DuckDB) against ``expected``."""
    rows, distinct = count_rows(lake)
    files, size = lake_files(lake)
    ok = rows == expected and distinct == expected
    text = (f"DuckDB: {rows:,} rows, {distinct:,} distinct seqnos in {files} files "
            f"({size / 2**20:,.1f} MB)")
    return ok, text if ok else f"{text}; expected {expected:,}"


async def measure_export(
    folder: Path, url: str, plan: Plan, results: Results, say: Callable[[str], None]
) -> float | None:
    """Row 1: produce ``plan.rows`` readings, then drain them into Parquet ``plan.repeats``
    times (a new exporter name and lake folder each run); best rows/s."""
    topic = "bench-asset-data"
    async with open_engine(url) as engine:
        await engine.create_topic(topic)
        produce_s = await produce_readings(engine, topic, plan.rows, say, "throughput")
    runs: list[float] = []
    how = ""
    checks: list[str] = []
    for run_no in range(1, plan.repeats + 1):
        name = f"bench-export-{run_no}"
        lake = folder / f"lake-{run_no}"
        label = f"export run {run_no}/{plan.repeats}"
        say(f"{label}: draining {plan.rows:,} readings into {lake.name}")
        if in_process_available():
            seconds = await drain_in_process(url, topic, lake, name, plan.rows,
                                             plan.batch_rows, say, label)
            how = "in-process Exporter, start → every row landed and acked"
        else:
            command = export_command(url, topic, lake, plan.batch_rows, IDLE, name)
            run = await asyncio.to_thread(run_exporter, command, lake, plan.rows, say, label,
                                          600.0)
            if run.failure():
                raise RuntimeError(run.failure())
            if run.landed_at is None:
                raise RuntimeError(f"{label}: not every row landed")
            seconds = run.landed_at
            how = ("`lakeport export run` subprocess, spawn (incl. Python start-up) → every "
                   "row in the lake folder")
        ok, text = check_lake(lake, plan.rows)
        lag = await consumer_lag(url, topic, name)
        if lag != 0:
            ok = False
            text += f"; exporter lag {lag} after the run"
        if not ok:
            results.problems.append(f"{label}: {text}")
        checks.append(text)
        runs.append(plan.rows / seconds)
    best = max(runs)
    spread = (f"best of {len(runs)}, median {statistics.median(runs):,.0f}"
              if len(runs) > 1 else "one run")
    batch = f"--batch-rows {plan.batch_rows:,}" if plan.batch_rows else "default batch_rows"
    results.rows.append(Row(
        "exporter · topic → Parquet zstd (file://)", rate_text(best), "",
        f"{mark(best >= TARGETS['export'])} ≥ {TARGETS['export']:,}",
        f"{how}; embedded engine, {plan.rows:,} readings produced first "
        f"({plan.rows / produce_s:,.0f} msgs/s), {batch}; {spread}; last check: {checks[-1]}",
    ))
    results.figures["export_rows_per_s"] = round(best)
    results.figures["export_runs_rows_per_s"] = [round(r) for r in runs]
    results.figures["export_rows"] = plan.rows
    return best


async def measure_naive(
    folder: Path, plan: Plan, results: Results, export_rate: float | None,
    say: Callable[[str], None],
) -> None:
    """Row 2 and 3: the SQLite buffer design, messages in and rows out."""
    messages = [orjson.dumps(r) for r in readings(0, plan.naive_in)]
    say(f"naive: {plan.naive_in:,} x (INSERT + COMMIT) with aiosqlite")
    in_rate = await naive_in_rate(folder / "naive-in.db", messages)
    results.rows.append(Row(
        "naive · aiosqlite INSERT + COMMIT each", rate_text(in_rate, "msgs/s"),
        versus(export_rate, in_rate),
        notes=f"JSON parsed, one INSERT + COMMIT per message, rollback journal, "
              f"synchronous=FULL, index on timestamp; {plan.naive_in:,} msgs",
    ))
    say(f"naive: pre-filling {plan.naive_out:,} rows")
    db = folder / "naive-out.db"
    rows = [row_of(orjson.dumps(r)) for r in readings(0, plan.naive_out)]
    await asyncio.to_thread(prefill, db, rows)
    del rows
    out_rate, exported = await naive_out_rate(db, folder / "naive-lake", plan.naive_batch, say)
    frame = f"pandas {pandas_version()}" if pandas_version() else "pyarrow Table.from_pylist"
    results.rows.append(Row(
        "naive · SELECT → pandas → to_parquet → DELETE", rate_text(out_rate),
        versus(export_rate, out_rate),
        notes=f"SELECT ... ORDER BY timestamp LIMIT {plan.naive_batch:,} via aiosqlite, "
              f"{frame}, zstd, DELETE those rows + COMMIT; {exported:,} pre-filled rows",
    ))
    results.figures.update(
        naive_rows_per_s=round(out_rate), naive_msgs_per_s_in=round(in_rate, 1),
        ratio_to_naive_out=round(export_rate / out_rate, 2) if export_rate else None,
        ratio_to_naive_in=round(export_rate / in_rate) if export_rate else None,
    )


async def measure_rss(
    folder: Path, url: str, plan: Plan, results: Results, say: Callable[[str], None],
    deadline: float | None,
) -> None:
    """Row 4: peak RSS of a ``lakeport export run`` process draining a large backlog."""
    topic = "bench-backlog"
    async with open_engine(url) as engine:
        await engine.create_topic(topic)
        produce_s = await produce_readings(engine, topic, plan.backlog, say, "backlog")
    lake = folder / "lake-backlog"
    name = "bench-export-backlog"
    command = export_command(url, topic, lake, plan.batch_rows, IDLE, name)
    budget = None if deadline is None else max(5.0, deadline - time.perf_counter())
    run = await asyncio.to_thread(run_exporter, command, lake, plan.backlog, say,
                                  "backlog export", 1800.0, budget)
    if run.failure():
        raise RuntimeError(run.failure())
    ok, text = check_lake(lake, run.rows_landed if run.cut_short else plan.backlog)
    lag = await consumer_lag(url, topic, name)
    if not run.cut_short and lag != 0:
        ok, text = False, f"{text}; exporter lag {lag} after the run"
    if not ok:
        results.problems.append(f"backlog export: {text}")
    if run.landed_at:
        landed = f"{plan.backlog / run.landed_at:,.0f} rows/s spawn → landed"
    elif run.cut_short:
        landed = (f"stopped at the --quick time budget ({budget:.0f} s) with "
                  f"{run.rows_landed:,} rows landed: the peak of that part")
    else:
        landed = "not every row landed"
    quick = (f" (not {10_000_000:,}: --quick/--backlog)" if plan.backlog < 10_000_000 else "")
    results.rows.append(Row(
        "exporter · peak RSS, backlog", f"{run.peak_rss_mb:,.0f} MB", "",
        f"{mark(run.peak_rss_mb <= TARGETS['rss_mb'])} ≤ {TARGETS['rss_mb']} MB",
        f"{plan.backlog:,}-reading backlog{quick} produced first "
        f"({plan.backlog / produce_s:,.0f} msgs/s); `lakeport export run` subprocess "
        f"(SIGTERM once every row landed), RSS (with children) sampled every 50 ms; "
        f"{landed}, process {run.wall:,.1f} s; {text}",
    ))
    results.figures.update(peak_rss_mb=round(run.peak_rss_mb, 1), backlog_rows=plan.backlog,
                           backlog_rows_per_s=round(plan.backlog / run.landed_at)
                           if run.landed_at else None, backlog_cut_short=run.cut_short)


async def run(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    """Measure every row; a row that cannot be measured says why instead of failing the run."""
    started = time.perf_counter()
    plan = make_plan(args)
    results = Results()
    base = Path(args.dir) if args.dir else None
    with tempfile.TemporaryDirectory(prefix="lakeport-bench-export-", dir=base) as tmp:
        folder = Path(tmp)
        os.environ["LAKEPORT_HOME"] = str(folder / "home")  # exporter status files
        results.filesystem = filesystem_of(folder)
        url = (folder / "streams").as_uri()
        export_rate: float | None = None
        try:
            export_rate = await measure_export(folder, url, plan, results, say)
        except Exception as exc:
            results.rows.append(Row("exporter · topic → Parquet zstd (file://)", "n/a",
                                    notes=f"n/a ({one_line(exc)})"))
            results.figures["export_rows_per_s"] = None
        try:
            await measure_naive(folder, plan, results, export_rate, say)
        except Exception as exc:
            results.rows.append(Row("naive · SQLite buffer", "n/a",
                                    notes=f"n/a ({one_line(exc)})"))
            results.figures.setdefault("naive_rows_per_s", None)
        if not args.skip_rss:
            try:
                deadline = started + QUICK_SECONDS if args.quick else None
                await measure_rss(folder, url, plan, results, say, deadline)
            except Exception as exc:
                results.rows.append(Row("exporter · peak RSS, backlog", "n/a",
                                        notes=f"n/a ({one_line(exc)})"))
        results.figures.setdefault("peak_rss_mb", None)
    return results


def render(console: Console, results: Results, args: argparse.Namespace, elapsed: float) -> None:
    print_rows(
        console, results.rows,
        title="lakeport export: topic → Parquet, side by side with a SQLite buffer",
        caption=(
            "All rows measured in this run. Readings in the app message format, 100 assets x "
            "10 datastreams, float values, ~117-byte JSON; the embedded engine and the lake "
            f"folder on {results.filesystem}. Exporter throughput: best of several runs, as the "
            "machine is noisy. " + machine_text(args.quick, elapsed)
        ),
        ratio_header="Exporter vs", ratio_width=14, problems=results.problems,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__,
                          "smaller data (2,000,000-row backlog): the run takes under a minute")
    parser.add_argument("--rows", type=int, default=None, metavar="N",
                        help="readings for the throughput row (default 1,000,000)")
    parser.add_argument("--backlog", type=int, default=None, metavar="N",
                        help="readings of the RSS backlog (default 10,000,000; quick 2,000,000)")
    parser.add_argument("--repeats", type=int, default=None, metavar="R",
                        help="exporter runs of the throughput row (default 3)")
    parser.add_argument("--batch-rows", type=int, default=None, metavar="N",
                        help="--batch-rows of the exporter (default: the exporter's own)")
    parser.add_argument("--skip-rss", action="store_true", help="leave out the backlog row")
    args = parser.parse_args(argv)
    for name in ("rows", "backlog", "repeats", "batch_rows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), lambda args, say: asyncio.run(run(args, say)), render)


if __name__ == "__main__":
    sys.exit(main())
