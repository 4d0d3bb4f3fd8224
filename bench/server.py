"""The platform server: observation ingest, latest values, a day to a DataFrame, file transfer.

Run from the repository root: ``python bench/server.py [--quick] [--json]``.
Every row is measured in the same run on this machine against ``lakeport serve`` processes
(SQLite under a temporary folder; PostgreSQL on 127.0.0.1:5432 in a database made for the run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from rich.console import Console

from _server_runner import ServerProcess, postgres_database
from _transfer import Transfer, measure_transfers
from topics import (
    Results,
    Row,
    bench_main,
    bench_parser,
    machine_text,
    mark,
    one_line,
    print_rows,
)

TARGETS = {"ingest": 100_000, "latest_p99_ms": 10.0, "day_s": 1.0, "transfer_ratio": 2.0}
PROPERTY = "temperature"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400


@dataclass
class Plan:
    ingest_rows: int  # observations per ingest row
    batch: int  # observations per request
    concurrency: int  # requests in flight
    naive_requests: int  # one observation per request
    latest_sensors: int
    latest_stored: int  # observations stored before the latest-value row
    latest_requests: int
    file_mb: int
    transfer_rounds: int  # the file figures are the best of these, cp's too


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(200_000, 10_000, 4, 300, 1_000, 1_000_000, 1_000, 256, 2)
    else:
        plan = Plan(1_000_000, 10_000, 4, 2_000, 1_000, 10_000_000, 5_000, 1_024, 3)
    if args.file_mb:
        plan.file_mb = args.file_mb
    if args.stored:
        plan.latest_stored = args.stored
    return plan


# -- observations ---------------------------------------------------------------------------
def setup_sensors(http: httpx.Client, names: list[str]) -> None:
    answer = http.post("/api/v1/properties", json={"name": PROPERTY, "unit": "C",
                                                   "data_type": "number"})
    if answer.status_code not in (201, 409):
        raise RuntimeError(f"creating the property: {answer.status_code} {answer.text[:200]}")
    for name in names:
        answer = http.post("/api/v1/sensors", json={"name": name, "kind": "atomic"})
        if answer.status_code not in (201, 409):
            raise RuntimeError(f"creating sensor {name}: {answer.status_code} {answer.text[:200]}")


def batch_body(sensor: str, first_ms: int, count: int, step_ms: int = 1000) -> bytes:
    rows = [[first_ms + i * step_ms, 20.0 + (i % 997) / 100] for i in range(count)]
    return orjson.dumps({"sensor": sensor, "components": ["time", PROPERTY], "dataArray": rows})


async def post_batches(url: str, key: str, bodies: Iterator[bytes], concurrency: int) -> int:
    """POST every body to /observations/batch with ``concurrency`` in flight; rows stored."""
    stored = 0
    headers = {"x-api-key": key, "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(concurrency * 2)

        async def worker() -> None:
            nonlocal stored
            while (body := await queue.get()) is not None:
                answer = await http.post("/api/v1/observations/batch", content=body)
                if answer.status_code != 201:
                    raise RuntimeError(f"batch insert: {answer.status_code} {answer.text[:200]}")
                stored += answer.json()["stored"]

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        for body in bodies:
            await queue.put(body)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    return stored


def ingest_rate(server: ServerProcess, plan: Plan, sensor: str) -> float:
    with server.client() as http:
        setup_sensors(http, [sensor])
    bodies = (batch_body(sensor, START_MS + first * 1000, min(plan.batch, plan.ingest_rows - first))
              for first in range(0, plan.ingest_rows, plan.batch))
    start = time.perf_counter()
    stored = asyncio.run(post_batches(server.url, server.key, bodies, plan.concurrency))
    seconds = time.perf_counter() - start
    if stored != plan.ingest_rows:
        raise RuntimeError(f"stored {stored:,} of {plan.ingest_rows:,} observations")
    return stored / seconds


def naive_rate(server: ServerProcess, plan: Plan, sensor: str) -> float:
    """One observation per request, one request at a time (the per-message design)."""
    with server.client() as http:
        setup_sensors(http, [sensor])
        start = time.perf_counter()
        for i in range(plan.naive_requests):
            answer = http.post("/api/v1/observations", json={
                "sensor": sensor, "property": PROPERTY, "time": START_MS + i * 1000,
                "value": 20.5})
            if answer.status_code != 201:
                raise RuntimeError(f"single insert: {answer.status_code} {answer.text[:200]}")
        return plan.naive_requests / (time.perf_counter() - start)


def latest_latency(server: ServerProcess, plan: Plan, say: Callable[[str], None]
                   ) -> tuple[float, float]:
    """(p50, p99) ms of the latest value of a random sensor among ``latest_sensors``."""
    names = [f"s-{n:04d}" for n in range(plan.latest_sensors)]
    with server.client() as http:
        setup_sensors(http, names)
    per_sensor = plan.latest_stored // len(names)

    def bodies() -> Iterator[bytes]:
        for index, name in enumerate(names):
            for first in range(0, per_sensor, plan.batch):
                yield batch_body(name, START_MS + first * 1000, min(plan.batch, per_sensor - first))
            if index % 100 == 99:
                say(f"latest: stored {(index + 1) * per_sensor:,} of "
                    f"{plan.latest_stored:,} observations")

    asyncio.run(post_batches(server.url, server.key, bodies(), plan.concurrency))
    timings: list[float] = []
    with server.client() as http:
        for i in range(plan.latest_requests):
            name = names[(i * 7919) % len(names)]
            start = time.perf_counter()
            answer = http.get("/api/v1/observations/latest",
                              params={"sensor": name, "property": PROPERTY})
            timings.append((time.perf_counter() - start) * 1000)
            if answer.status_code != 200 or not answer.json()["items"]:
                raise RuntimeError(f"latest: {answer.status_code} {answer.text[:200]}")
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


def day_to_dataframe(server: ServerProcess, plan: Plan) -> tuple[float, int]:
    """Seconds to fetch one sensor's day at 1 Hz as a pandas DataFrame through the client."""
    from lakeport.client import SyncClient

    sensor = "day-sensor"
    with server.client() as http:
        setup_sensors(http, [sensor])
    bodies = (batch_body(sensor, START_MS + first * 1000, min(plan.batch, DAY - first))
              for first in range(0, DAY, plan.batch))
    asyncio.run(post_batches(server.url, server.key, bodies, plan.concurrency))
    best = float("inf")
    rows = 0
    with SyncClient(server.url, server.key) as client:
        for _ in range(3):
            start = time.perf_counter()
            frame = client.observations.query(sensor=sensor, property=PROPERTY,
                                              start=START_MS, end=START_MS + DAY * 1000,
                                              format="dataframe")
            best = min(best, time.perf_counter() - start)
            rows = len(frame)
    return best, rows


# -- files ----------------------------------------------------------------------------------
# -- the run --------------------------------------------------------------------------------
def measure(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    results = Results()
    plan = make_plan(args)
    base = Path(args.dir or tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix="lakeport-bench-server-", dir=base) as tmp:
        folder = Path(tmp)
        stores = [("SQLite", contextlib.nullcontext(f"sqlite:///{folder / 'store.db'}"))]
        if not args.skip_postgresql:
            stores.append(("PostgreSQL", postgres_database()))
        rates: dict[str, float] = {}
        for label, store_cm in stores:
            key = f"ingest_obs_per_s_{label.lower()}"
            try:
                with store_cm as store_url, ServerProcess(folder / label, store_url) as server:
                    say(f"{label}: batch ingest of {plan.ingest_rows:,} observations")
                    rate = ingest_rate(server, plan, "ingest-sensor")
                    say(f"{label}: one observation per request")
                    naive = naive_rate(server, plan, "naive-sensor")
            except Exception as exc:
                results.rows.append(Row(f"{label} · batch ingest over HTTP", "n/a",
                                        notes=f"n/a ({one_line(exc)})"))
                results.figures[key] = None
                results.problems.append(f"{label} ingest: {one_line(exc)}")
                continue
            rates[label] = rate
            results.figures[key] = round(rate)
            results.rows.append(Row(
                f"{label} · batch ingest over HTTP", f"{rate:,.0f} obs/s", "",
                f"{mark(rate >= TARGETS['ingest'])} ≥ {TARGETS['ingest']:,}",
                f"{plan.ingest_rows:,} observations, {plan.batch:,} per POST "
                f"/observations/batch, {plan.concurrency} requests in flight"))
            results.rows.append(Row(
                f"{label} · one observation per request", f"{naive:,.0f} obs/s",
                f"{rate / naive:,.0f}x slower", "",
                f"{plan.naive_requests:,} POST /observations one after another"))
        try:
            with ServerProcess(folder / "latest", f"sqlite:///{folder / 'latest.db'}") as server:
                p50, p99 = latest_latency(server, plan, say)
                say("a day of one sensor to a DataFrame")
                day_s, day_rows = day_to_dataframe(server, plan)
                files = measure_transfers(server, folder, plan.file_mb, plan.transfer_rounds,
                                          say)
        except Exception as exc:
            results.problems.append(f"queries and files: {one_line(exc)}")
            results.rows.append(Row("queries and files", "n/a", notes=f"n/a ({one_line(exc)})"))
            for name in ("latest_p99_ms", "day_to_dataframe_s", "upload_vs_cp_ratio",
                         "download_vs_cp_ratio"):
                results.figures.setdefault(name, None)
            return results
        results.figures.update(latest_p99_ms=round(p99, 2), latest_p50_ms=round(p50, 2),
                               day_to_dataframe_s=round(day_s, 3))
        results.rows += [
            Row("latest value, 1 of 1,000 sensors", f"p99 {p99:.2f} ms · p50 {p50:.2f} ms", "",
                f"{mark(p99 <= TARGETS['latest_p99_ms'])} p99 ≤ 10 ms",
                f"{plan.latest_stored:,} observations stored (SQLite), {plan.latest_requests:,} "
                "GET /observations/latest one after another, keep-alive"),
            Row("a day at 1 Hz → DataFrame (client)", f"{day_s:.3f} s", "",
                f"{mark(day_s <= TARGETS['day_s'])} ≤ 1 s",
                f"{day_rows:,} rows, lakeport.client SyncClient, format='dataframe', best of 3"),
        ]
        transfer_rows(results, files, plan.transfer_rounds)
    return results


def transfer_rows(results: Results, files: Transfer, rounds: int) -> None:
    size, cp = files.size_mb, files.cp
    limit = TARGETS["transfer_ratio"]

    def ratio(seconds: float) -> float:
        return round(seconds / cp, 2)

    results.figures.update(
        upload_vs_cp_ratio=ratio(files.upload), download_vs_cp_ratio=ratio(files.download),
        upload_vs_cp_fsync_ratio=round(files.upload / files.cp_fsync, 2),
        bare_upload_vs_cp_ratio=ratio(files.bare_upload),
        bare_download_vs_cp_ratio=ratio(files.bare_download),
        raw_socket_vs_cp_ratio=ratio(files.raw_socket),
        transfer_rss_growth_mb=round(files.rss_growth_mb))

    def row(label: str, seconds: float, target: str, notes: str) -> Row:
        return Row(f"{label} {size:,.0f} MB", f"{size / seconds:,.0f} MB/s",
                   f"{seconds / cp:.2f}x of cp", target, notes)

    results.rows += [
        row("upload", files.upload, f"{mark(files.upload / cp <= limit)} ≤ {limit:g}x cp",
            f"client.datalake.put of a file path, fsync'd before the answer "
            f"({files.upload / files.cp_fsync:.2f}x of cp + fsync); cp took {cp:.2f} s; "
            f"best of {rounds}, each step after a sync; server RSS grew "
            f"{files.rss_growth_mb:,.0f} MB at most"),
        row("download", files.download, f"{mark(files.download / cp <= limit)} ≤ {limit:g}x cp",
            "client.datalake.get to a file path"),
        row("reference: cp + fsync", files.cp_fsync, "",
            "the copy on the disk, as an acknowledged upload is"),
        row("reference: bare uvicorn, upload", files.bare_upload, "",
            "the same client and uvicorn, an app that discards the body: the stack's ceiling"),
        row("reference: bare uvicorn, download", files.bare_download, "",
            "the same client and uvicorn, an app that serves the file in 4 MB reads"),
        row("reference: raw TCP socket", files.raw_socket, "",
            "Python sendall → recv_into → file on loopback, no HTTP"),
    ]


def render(console: Console, results: Results, args: argparse.Namespace, elapsed: float) -> None:
    print_rows(
        console, results.rows,
        title="lakeport server: ingest, queries and files, side by side",
        caption=("All rows measured in this run against `lakeport serve` processes on "
                 "127.0.0.1. " + machine_text(args.quick, elapsed)),
        ratio_header="vs batch", ratio_width=14, problems=results.problems,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__,
                          "smaller data (1,000,000 stored, 256 MB file): under a minute")
    parser.add_argument("--stored", type=int, default=None, metavar="N",
                        help="observations stored for the latest-value row (default 10,000,000)")
    parser.add_argument("--file-mb", type=int, default=None, metavar="MB",
                        help="size of the transferred file (default 1,024)")
    parser.add_argument("--skip-postgresql", action="store_true",
                        help="leave out the PostgreSQL ingest row")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if shutil.which("cp") is None:
        print("cp not found: the transfer rows compare with cp", file=sys.stderr)
        return 1
    return bench_main(parse_args(argv), measure, render)


if __name__ == "__main__":
    sys.exit(main())
