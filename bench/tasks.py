"""Task service: throughput of trivial ``py`` runs on two workers next to Celery on RabbitMQ,
start latency on an idle worker, the scheduler with thousands of cron tasks due in one slot,
and an idle worker's memory.

Run from the repository root: ``python bench/tasks.py [--quick] [--json]``.
Everything runs in this one process's run on this machine: ``lakeport serve --workers 0`` on
a free port (SQLite store, lake and home in a temporary folder), two ``lakeport worker``
processes, and a Celery prefork worker on the machine's RabbitMQ
(``pip install 'lakeport[bench]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from _server_runner import (
    ServerProcess,
    cpu_seconds,
    lakeport,
    rss_mb,
    stop_process,
    wait_healthy,
)
from topics import Results, Row, bench_main, bench_parser, machine_text, one_line, print_rows

HERE = Path(__file__).resolve().parent
API = "/api/v1/tasks"
ENDED = ("succeeded", "failed", "cancelled", "lost")
LIVE = ("queued", "running", "paused")
AMQP = os.environ.get("LAKEPORT_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
PARALLEL = 16  # HTTP requests in flight when starting runs or copying tasks
TARGET_RATE = 100
TARGET_P50_MS, TARGET_P99_MS = 20, 100
TARGET_SPREAD_S = 5.0
TARGET_RSS_MB = 80
LOST_AFTER_S = 30  # the server's default: a run whose worker stays silent this long is lost
STAMP_SH = b'date +%s%N > "$LAKEPORT_PARAM_STAMP"\n'


@dataclass
class Plan:
    runs: int  # trivial py runs, on lakeport and on Celery each
    starts: int  # sequential starts for the latency
    cron_tasks: int
    cron: str  # the cron expression of the scheduler part
    workers: int = 2
    concurrency: int = 4  # per worker; Celery gets workers * concurrency processes
    idle: float = 5.0  # seconds a worker stays idle before its RSS is read

    @property
    def total_concurrency(self) -> int:
        return self.workers * self.concurrency


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(100, 20, 300, "*/10 * * * * *")
    else:
        plan = Plan(2_000, 200, 10_000, "* * * * *")
    plan.concurrency = args.concurrency
    if args.quick:
        plan.idle = 3.0
    return plan


def ms_of(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


@dataclass
class Figures:
    """What the parts measured (None where a part could not run)."""

    rate: float | None = None
    rate_note: str = ""
    celery_rate: float | None = None
    celery_note: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    claims_ms: list[float] = field(default_factory=list)  # start sent → claimed (server)
    claim_note: str = ""
    copies_per_s: float | None = None
    spreads_s: list[float] = field(default_factory=list)
    cron_note: str = ""
    rss_fresh_mb: list[float] = field(default_factory=list)
    rss_after_mb: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lost_seen: int = 0  # runs of the throughput part seen lost right after it
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU a run of the throughput part
    cron_queued: int = 0


# -- the lakeport side ----------------------------------------------------------------------
class Service:
    """HTTP calls on the task API (an async client for many requests in flight)."""

    def __init__(self, server: ServerProcess) -> None:
        self.http = httpx.AsyncClient(base_url=server.url, headers={"x-api-key": server.key},
                                      timeout=120, limits=httpx.Limits(max_connections=64))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def ok(self, answer: Awaitable[httpx.Response]) -> Any:
        response = await answer
        if response.status_code >= 300:
            raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                               f"{response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    async def project(self, name: str) -> None:
        await self.ok(self.http.post(f"{API}/projects", json={"name": name}))

    async def deploy(self, project: str, task: str, filename: str, code: bytes,
                     spec: dict[str, Any]) -> None:
        await self.ok(self.http.put(f"{API}/projects/{project}/tasks/{task}",
                                    data={"spec": json.dumps(spec)},
                                    files={"executable": (filename, code)}))

    async def start(self, project: str, task: str, **parameters: str) -> int:
        run = await self.ok(self.http.post(f"{API}/projects/{project}/tasks/{task}/start",
                                           json={"parameters": parameters}))
        return int(run["id"])

    async def run(self, run_id: int) -> dict[str, Any]:
        return await self.ok(self.http.get(f"{API}/runs/{run_id}"))

    async def runs(self, project: str, task: str, *states: str, limit: int = 10_000
                   ) -> list[dict[str, Any]]:
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("state", state) for state in states]
        page = await self.ok(self.http.get(f"{API}/projects/{project}/tasks/{task}/runs",
                                           params=params))
        return page["items"]

    async def tasks(self, project: str) -> list[dict[str, Any]]:
        return (await self.ok(self.http.get(f"{API}/projects/{project}/tasks")))["items"]


async def in_parallel(count: int, call: Callable[[int], Awaitable[Any]],
                      parallel: int = PARALLEL) -> list[Any]:
    """``call(i)`` for i in range(count), ``parallel`` at a time; results in order."""
    results: list[Any] = [None] * count
    cursor = iter(range(count))

    async def lane() -> None:
        for index in cursor:
            results[index] = await call(index)

    await asyncio.gather(*(lane() for _ in range(min(parallel, count))))
    return results


@contextlib.contextmanager
def workers(server: ServerProcess, plan: Plan, folder: Path) -> Iterator[list[int]]:
    """``plan.workers`` ``lakeport worker`` processes on the server (a worker key through the
    environment); their pids. Stopped (SIGTERM) on exit."""
    key = lakeport("keys", "create", "--user", "bench-worker", "--worker", env=server.env)
    env = {**server.env, "LAKEPORT_HOME": str(folder), "LAKEPORT_API_KEY": key,
           "LAKEPORT_URL": server.url}
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "workers.log").open("wb")
    processes = [subprocess.Popen(
        [sys.executable, "-m", "lakeport.cli", "worker", "--name", f"bench-{number}",
         "--runtimes", "py,sh", "--concurrency", str(plan.concurrency)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        for number in range(plan.workers)]
    try:
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            stop_process(process)
        log.close()


async def until_ended(service: Service, run_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = await service.run(run_id)
        if run["state"] in ENDED:
            return run
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not end in {timeout:.0f} s: {run}")
        await asyncio.sleep(0.005)


async def warm_up(service: Service, plan: Plan) -> None:
    """A few runs on each worker's slots so both are connected and have run something."""
    ids = [await service.start("bench", "noop") for _ in range(plan.total_concurrency)]
    for run_id in ids:
        run = await until_ended(service, run_id, timeout=120)
        if run["state"] != "succeeded":
            raise RuntimeError(f"the warm-up run failed: {run['reason']}")


async def start_latency(service: Service, plan: Plan, stamps: Path, say: Callable[[str], None]
                        ) -> tuple[list[float], list[float]]:
    """Milliseconds from sending ``start`` (client clock, just before the request) to the
    ``sh`` task's first command writing ``date +%s%N`` (same machine clock), one run at a
    time; each run ends before the next starts, so a worker is idle each time. Also the
    milliseconds from sending ``start`` to the server's ``running`` event (the claim)."""
    latencies, claims = [], []
    for number in range(plan.starts):
        if number % 25 == 0:
            say(f"start latency: {number}/{plan.starts}")
        stamp = stamps / f"{number}.ns"
        await asyncio.sleep(0.05)  # the worker is back in its claim long poll
        sent = time.time_ns()
        run_id = await service.start("bench", "stamp", stamp=str(stamp))
        deadline = time.monotonic() + 30
        while not (stamp.exists() and stamp.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} did not write its stamp: "
                                   f"{await service.run(run_id)}")
            await asyncio.sleep(0.001)
        latencies.append((int(stamp.read_text()) - sent) / 1e6)
        run = await service.run((await until_ended(service, run_id))["id"])
        claimed = [e for e in run["events"] if e["state"] == "running"]
        if claimed:
            claims.append(ms_of(claimed[0]["at"]) - sent / 1e6)
    return latencies, claims


async def throughput(service: Service, plan: Plan, say: Callable[[str], None]
                     ) -> tuple[float, str, list[str]]:
    """Runs per second from the first start request to the last run's end (the server's
    ``ended`` time), ``plan.runs`` trivial py runs started with PARALLEL requests in flight;
    a note, and the problems seen (runs that did not succeed)."""
    say(f"lakeport: starting {plan.runs:,} trivial py runs")
    began = time.time()
    ids = set(await in_parallel(plan.runs, lambda _: service.start("bench", "noop")))
    sent = time.time() - began
    while await service.runs("bench", "noop", *LIVE, limit=1):
        await asyncio.sleep(0.1)
    runs = [run for run in await service.runs("bench", "noop") if run["id"] in ids]
    last = max(ms_of(run["ended"]) for run in runs) / 1000
    seconds = last - began
    note = (f"{plan.runs:,} runs in {seconds:.1f} s; starts sent in {sent:.1f} s "
            f"({PARALLEL} in flight)")
    problems = []
    failed = [run for run in runs if run["state"] != "succeeded"]
    if failed:
        states = statistics.multimode(run["state"] for run in failed)
        problems.append(f"{len(failed)} of {plan.runs:,} runs ended {'/'.join(states)} though "
                        f"their task exited 0, e.g. run {failed[0]['id']}: {failed[0]['reason']}")
        kept = [ms_of(run["ended"]) for run in runs if run["state"] != "lost"]
        if kept and len(kept) < len(runs):
            note += (f"; {len(failed)} runs were marked {failed[0]['state']} "
                     f"{LOST_AFTER_S:g} s after they ended, which the rate above waits for: to "
                     f"the last end of the others, {plan.runs / (max(kept) / 1000 - began):,.0f}"
                     " runs/s")
    return plan.runs / seconds, note, problems


async def scheduler(service: Service, plan: Plan, say: Callable[[str], None]
                    ) -> tuple[list[float], float, str, list[str]]:
    """Deploy one cron task and copy it to ``plan.cron_tasks`` tasks (no worker runs), wait
    for the first slot after the last copy, and return each task's (created - slot) of that
    slot's run in seconds, the copies per second, and a note."""
    project = "cron"
    problems: list[str] = []
    await service.project(project)
    spec = {"runtime": "sh", "schedule": {"kind": "cron", "expression": plan.cron}}
    await service.deploy(project, "c00000", "stamp.sh", b"true\n", spec)
    say(f"scheduler: copying the cron task to {plan.cron_tasks:,} tasks")
    began = time.monotonic()
    errors: list[str] = []

    async def copy(index: int) -> None:
        for _ in range(10):  # a copy the server failed (500, a dropped connection) again
            try:
                answer = await service.http.post(f"{API}/projects/{project}/tasks/c00000/copy",
                                                 json={"name": f"c{index + 1:05d}"})
            except httpx.TransportError as exc:
                errors.append(type(exc).__name__)
                continue
            if answer.status_code in (201, 409):  # 409: a copy that failed late was made
                return
            errors.append(f"{answer.status_code} {answer.text[:200]}")
            if answer.status_code < 500:
                break
        raise RuntimeError(f"copying the cron task failed: {errors[-1]}")

    await in_parallel(plan.cron_tasks - 1, copy)
    copies_per_s = (plan.cron_tasks - 1) / (time.monotonic() - began)
    copied = time.time()
    step = 10 if plan.cron.count(" ") == 5 else 60
    slot_ms = int((math.floor(copied / step) + 1) * step * 1000)
    say(f"scheduler: waiting for the slot {datetime.fromtimestamp(slot_ms / 1000, UTC):%H:%M:%S}")
    await asyncio.sleep(max(0.0, slot_ms / 1000 - time.time()) + TARGET_SPREAD_S)
    deadline = time.monotonic() + 120
    while True:  # until every task has fired its slot (next_run moved past it)
        listed = await service.tasks(project)
        waiting = [t for t in listed if t["next_run"] is None or ms_of(t["next_run"]) <= slot_ms]
        if not waiting or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    say(f"scheduler: reading the runs of {len(listed):,} tasks")

    async def spread_of(index: int) -> float | None:
        for run in await service.runs(project, listed[index]["name"], limit=20):
            if run["slot"] and ms_of(run["slot"]) == slot_ms:
                return (ms_of(run["created"]) - slot_ms) / 1000
        return None

    found = await in_parallel(len(listed), spread_of)
    spreads = [s for s in found if s is not None]
    say("scheduler: deleting the project")
    began = time.monotonic()
    deleted_text = "failed"
    for _ in range(5):
        answer = await service.http.delete(f"{API}/projects/{project}")
        if answer.status_code == 204:
            deleted_text = f"{time.monotonic() - began:.1f} s"
            break
        await asyncio.sleep(2)
    else:
        problems.append(f"deleting the project of {plan.cron_tasks:,} cron tasks failed 5 "
                        f"times: {answer.status_code} {answer.text[:160]}")
    note = (f"{len(spreads):,} of {plan.cron_tasks:,} tasks queued a run of the slot "
            f"('{plan.cron}', no worker running); made by 1 deploy + copies at "
            f"{copies_per_s:,.0f} tasks/s ({PARALLEL} in flight); deleting the project "
            f"{deleted_text}")
    if errors:
        note += (f"; {len(errors)} copy requests failed and were sent again (e.g. "
                 f"{errors[0][:160]})")
        problems.append(f"{len(errors)} task copies failed on the server (e.g. {errors[0][:160]})")
    if len(spreads) < plan.cron_tasks:
        note += (f"; {plan.cron_tasks - len(spreads):,} tasks queued no run of that slot (120 s "
                 "after it): the max counts only those that did")
        problems.append(f"{plan.cron_tasks - len(spreads):,} of {plan.cron_tasks:,} cron tasks "
                        "queued no run of the measured slot")
    return spreads, copies_per_s, note, problems


class LoggedServer(ServerProcess):
    """``lakeport serve`` whose stderr goes to a file (a pipe nobody reads could fill up and
    stall it); the end of the file is shown when it fails."""

    def __enter__(self) -> LoggedServer:
        self.key = lakeport("keys", "create", "--user", "bench", env=self.env)
        self.log = Path(self.env["LAKEPORT_HOME"]).parent / "serve.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lakeport.cli", "serve", "--port", str(self.port),
                 *self.args], env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        wait_healthy(self.process, self.url, "lakeport serve", self.__exit__)
        return self

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def lakeport_part(plan: Plan, folder: Path, figures: Figures,
                        say: Callable[[str], None]) -> None:
    say("starting lakeport serve --workers 0")
    with LoggedServer(folder / "server", f"sqlite:///{folder / 'store.db'}",
                      ["--workers", "0"]) as server:
        service = Service(server)
        try:
            await service.project("bench")
            await service.deploy("bench", "noop", "main.py", b"", {"runtime": "py"})
            await service.deploy("bench", "stamp", "stamp.sh", STAMP_SH, {"runtime": "sh"})
            with workers(server, plan, folder / "workers") as pids:
                say(f"{plan.workers} lakeport workers: warming up")
                await warm_up(service, plan)
                await asyncio.sleep(plan.idle)
                figures.rss_fresh_mb = [rss_mb(pid) for pid in pids]
                stamps = folder / "stamps"
                stamps.mkdir()
                figures.latencies_ms, figures.claims_ms = await start_latency(
                    service, plan, stamps, say)
                groups = {"server": [server.process.pid], "workers": pids}
                before = cpu_seconds(groups)
                figures.rate, figures.rate_note, problems = await throughput(service, plan, say)
                after = cpu_seconds(groups)
                figures.cpu_ms = {group: (after[group] - before[group]) / plan.runs * 1000
                                  for group in after}
                figures.problems += problems
                figures.lost_seen = len(problems) and int(problems[0].split()[0])
                say("lakeport workers idle")
                await asyncio.sleep(plan.idle)
                figures.rss_after_mb = [rss_mb(pid) for pid in pids]
            figures.spreads_s, figures.copies_per_s, figures.cron_note, problems = \
                await scheduler(service, plan, say)
            figures.problems += problems
            # runs that ended succeeded may be turned lost later (a heartbeat applied after
            # the finish): look again, now that the scheduler part has taken a while
            runs = await service.runs("bench", "noop")
            relost = [run for run in runs if run["state"] == "lost"]
            if len(relost) > figures.lost_seen:
                figures.problems.append(
                    f"{len(relost)} of {len(runs):,} noop runs (warm-up included) are lost "
                    f"though their task exited 0, e.g. run {relost[0]['id']}: "
                    f"{relost[0]['reason']}")
        except Exception:
            if os.environ.get("LAKEPORT_BENCH_SHOW_LOG"):
                print(server.tail(), file=sys.stderr)
            raise
        finally:
            await service.aclose()


# -- the Celery side ------------------------------------------------------------------------
def celery_part(plan: Plan, figures: Figures, say: Callable[[str], None]) -> None:
    """The same trivial runs through a Celery prefork worker with the same total concurrency;
    runs per second from the first ``send_task`` to the last result back (``rpc://``)."""
    try:
        import celery  # noqa: F401
    except ImportError:
        figures.celery_note = "celery is not installed: pip install 'lakeport[bench]'"
        print("celery is not installed: pip install 'lakeport[bench]'", file=sys.stderr)
        return
    queue = f"lakeport-bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LAKEPORT_BENCH_AMQP": AMQP, "LAKEPORT_BENCH_QUEUE": queue,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE),
                                                       os.environ.get("PYTHONPATH")]))}
    os.environ.update(LAKEPORT_BENCH_AMQP=AMQP, LAKEPORT_BENCH_QUEUE=queue)
    sys.path.insert(0, str(HERE))
    from _celery_app import app

    say(f"celery: starting a prefork worker (-c {plan.total_concurrency}) on {AMQP}")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "_celery_app", "worker", "--pool", "prefork",
         "--concurrency", str(plan.total_concurrency), "--queues", queue, "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
        cwd=HERE, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        try:
            warm = [app.send_task("lakeport_bench.run_main", queue=queue)
                    for _ in range(plan.total_concurrency)]
            for result in warm:
                result.get(timeout=120)
        except Exception as exc:
            figures.celery_note = f"celery did not run: {one_line(exc)}"
            return
        say(f"celery: {plan.runs:,} trivial runs")
        began = time.time()
        results = [app.send_task("lakeport_bench.run_main", queue=queue)
                   for _ in range(plan.runs)]
        codes = [result.get(timeout=600) for result in results]
        seconds = time.time() - began
        if any(codes):
            figures.celery_note = f"{sum(1 for c in codes if c)} Celery runs failed"
            return
        figures.celery_rate = plan.runs / seconds
        figures.celery_note = (f"{plan.runs:,} runs in {seconds:.1f} s: prefork pool, "
                               f"-c {plan.total_concurrency}, RabbitMQ, rpc:// results")
    finally:
        stop_process(worker)
        with contextlib.suppress(Exception):
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
        app.close()


# -- measure and show -------------------------------------------------------------------------
def measure(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    plan = make_plan(args)
    figures = Figures()
    results = Results()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="lakeport-bench-tasks-") as tmp:
        try:
            asyncio.run(lakeport_part(plan, Path(tmp), figures, say))
        except Exception as exc:
            results.problems.append(f"lakeport: {one_line(exc)}")
    celery_part(plan, figures, say)
    results.problems += figures.problems
    fill(results, plan, figures)
    return results


def fill(results: Results, plan: Plan, figures: Figures) -> None:
    rows, out = results.rows, results.figures
    rate, celery_rate = figures.rate, figures.celery_rate
    ratio = rate / celery_rate if rate and celery_rate else None
    cpu = figures.cpu_ms
    cpu_note = (f"; CPU a run: server {cpu['server']:.1f} ms, workers {cpu['workers']:.1f} ms, "
                f"their launchers and task processes {cpu['workers children']:.1f} ms, this "
                f"client's start requests {cpu['client']:.1f} ms" if cpu else "")
    rows.append(Row(f"throughput · {plan.runs:,} trivial py runs · {plan.workers} workers x "
                    f"{plan.concurrency}", "n/a" if rate is None else f"{rate:,.0f} runs/s",
                    "" if ratio is None else f"{ratio:.2f}x of Celery",
                    target(rate, TARGET_RATE, ">="), figures.rate_note + cpu_note))
    rows.append(Row(f"Celery · the same runs · prefork -c {plan.total_concurrency}",
                    "n/a" if celery_rate is None else f"{celery_rate:,.0f} runs/s", "",
                    target(ratio, 1.0, ">=", "x (ratio)"), figures.celery_note))
    p50 = p99 = None
    if figures.latencies_ms:
        p50 = statistics.median(figures.latencies_ms)
        p99 = percentile(figures.latencies_ms, 0.99)
        rows.append(Row(f"start latency · {len(figures.latencies_ms)} sequential starts",
                        f"{p50:.1f} ms p50", "", target(p50, TARGET_P50_MS, "<=", " ms"),
                        "start request sent (client clock) → the sh task's first command, "
                        "date +%s%N, on an idle worker (includes sh and date starting)"))
        rows.append(Row("", f"{p99:.1f} ms p99", "", target(p99, TARGET_P99_MS, "<=", " ms"),
                        f"max {max(figures.latencies_ms):.1f} ms" + claim_split(figures)))
    spread = None
    if figures.spreads_s:
        spread = max(figures.spreads_s)
        rows.append(Row(f"scheduler · {plan.cron_tasks:,} cron tasks due in one slot",
                        f"{spread:.2f} s max", f"p50 {statistics.median(figures.spreads_s):.2f}"
                        " s", target(spread if len(figures.spreads_s) == plan.cron_tasks
                                     else math.inf, TARGET_SPREAD_S, "<=", " s"),
                        "slot → each run's created time; " + figures.cron_note))
    elif figures.cron_note:
        rows.append(Row("scheduler", "n/a", "", "", figures.cron_note))
    rss = max(figures.rss_fresh_mb + figures.rss_after_mb, default=None)
    if rss is not None:
        rows.append(Row("worker RSS, idle", f"{rss:.0f} MB", "",
                        target(rss, TARGET_RSS_MB, "<=", " MB"),
                        "max of both workers; after the warm-up "
                        + ", ".join(f"{r:.0f}" for r in figures.rss_fresh_mb)
                        + f" MB; idle {plan.idle:g} s after the throughput part "
                        + ", ".join(f"{r:.0f}" for r in figures.rss_after_mb) + " MB"))
    out["task_runs_per_s"] = None if rate is None else round(rate, 1)
    out["cpu_ms_per_run"] = {group: round(ms, 2) for group, ms in cpu.items()}
    out["celery_ratio"] = None if ratio is None else round(ratio, 2)
    out["start_p50_ms"] = None if p50 is None else round(p50, 1)
    out["start_p99_ms"] = None if p99 is None else round(p99, 1)
    out["cron_10k_spread_s"] = None if spread is None else round(spread, 2)
    out["cron_tasks_queued_in_slot"] = len(figures.spreads_s)
    out["worker_idle_rss_mb"] = None if rss is None else round(rss, 1)


def claim_split(figures: Figures) -> str:
    """Where the start latency goes: to the claim (server clock, ms resolution) and after."""
    if not figures.claims_ms:
        return ""
    claim = statistics.median(figures.claims_ms)
    return (f"; p50 split: start sent → claimed (server's running event) {claim:.0f} ms, "
            f"claimed → process running {statistics.median(figures.latencies_ms) - claim:.0f}"
            " ms")


def target(value: float | None, limit: float, how: str, unit: str = "") -> str:
    shown = f"{limit:g}{unit}" if unit else f"{limit:,} runs/s"
    if value is None:
        return f"{how.replace('>=', '≥').replace('<=', '≤')} {shown}"
    ok = value >= limit if how == ">=" else value <= limit
    return f"{'✓' if ok else '✗'} {'≥' if how == '>=' else '≤'} {shown}"


def render(console: Console, results: Results, args: argparse.Namespace, elapsed: float) -> None:
    plan = make_plan(args)
    scaled = (f"--quick: scaled down to {plan.runs} runs each side (not 2,000), "
              f"{plan.starts} starts (not 200) and {plan.cron_tasks} cron tasks with a six-field"
              " cron every 10 s (*/10 * * * * *) instead of 10,000 with * * * * *; workers "
              f"idle {plan.idle:g} s before RSS. " if args.quick else "")
    print_rows(
        console, results.rows,
        title="lakeport tasks: throughput, start latency, scheduler, worker memory",
        caption=(f"All rows measured in this run. lakeport serve --workers 0 (SQLite store) "
                 f"with {plan.workers} lakeport worker processes of concurrency "
                 f"{plan.concurrency}; a run is a py task whose main.py is empty, a process of "
                 "its own forked by the worker's launcher, where it runs in the forked "
                 "interpreter (no interpreter start-up); each Celery task runs the same "
                 "python -u main.py as a subprocess (a fresh interpreter). Throughput counts "
                 "from the first start request to the last run's end. " + scaled
                 + machine_text(args.quick, elapsed)),
        ratio_header="Ratio", ratio_width=20, problems=results.problems,
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "100 runs, 20 starts, 300 cron tasks: under a minute")
    parser.add_argument("--concurrency", type=int, default=4, metavar="C",
                        help="runs at once per lakeport worker (Celery gets 2 x C processes; "
                             "default: %(default)s)")
    return bench_main(parser.parse_args(argv), measure, render)


if __name__ == "__main__":
    sys.exit(main())
