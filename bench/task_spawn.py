"""Task processes: starting a trivial ``py`` task and ``sh -c date`` spawned directly from a
worker-sized process next to forked by a launcher (the fork server of
:mod:`lakeport.tasks.launcher`).

Run from the repository root: ``python bench/task_spawn.py [--quick] [--json]``. This process
plays the worker (``--ballast`` MiB more make it bigger; an idle worker is ~50 MB resident):
it starts each task with ``TaskProcess.start`` as a worker's attempt does.
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
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from lakeport.tasks.launching import Launcher, Launchers
from lakeport.tasks.process import Limits, TaskProcess
from topics import Results, Row, bench_main, bench_parser, machine_text, print_rows

TARGET_P50_MS = 20
TARGET_RATE = 100  # runs/s (issue 14: on two workers on two cores)
CLOCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Plan:
    runs: int  # sequential runs per row
    parallel_runs: int  # runs with `in_flight` at once
    in_flight: int = 8


@dataclass
class Figures:
    """One way of starting: latencies (ms), CPU per run (ms) and rates (runs/s)."""

    latencies_ms: list[float] = field(default_factory=list)
    spawn_ms: list[float] = field(default_factory=list)  # start() call → pid known
    cpu_ms: float = 0.0
    rate: float = 0.0
    parallel_rate: float = 0.0
    parallel_cpu_ms: float = 0.0


def cpu_seconds(launchers: list[Launcher]) -> float:
    """CPU time of this process, its reaped children, the launchers and theirs."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    for launcher in launchers:
        try:
            fields = Path(f"/proc/{launcher.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(value) for value in fields[11:15]) / CLOCK  # utime .. cstime
    return total


async def one_run(argv: list[str], folder: Path, env: dict[str, str],
                  launcher: Launcher | None, python: bool, figures: Figures) -> None:
    started = time.perf_counter()
    process = await TaskProcess.start(argv, cwd=folder, env=env, limits=Limits(),
                                      on_output=lambda *_: None, launcher=launcher,
                                      python=python)
    figures.spawn_ms.append((time.perf_counter() - started) * 1000)
    code = await process.wait()
    figures.latencies_ms.append((time.perf_counter() - started) * 1000)
    if code != 0:
        raise RuntimeError(f"{argv} ended with {code}")


async def measure_way(argv: list[str], folder: Path, env: dict[str, str],
                      launcher: Launcher | None, python: bool, plan: Plan) -> Figures:
    figures = Figures()
    watched = [launcher] if launcher is not None else []
    for _ in range(3):  # warm-up
        await one_run(argv, folder, env, launcher, python, Figures())
    cpu, wall = cpu_seconds(watched), time.perf_counter()
    for _ in range(plan.runs):
        await one_run(argv, folder, env, launcher, python, figures)
    wall = time.perf_counter() - wall
    figures.cpu_ms = (cpu_seconds(watched) - cpu) / plan.runs * 1000
    figures.rate = plan.runs / wall
    slots = asyncio.Semaphore(plan.in_flight)
    scratch = Figures()

    async def limited() -> None:
        async with slots:
            await one_run(argv, folder, env, launcher, python, scratch)

    cpu, wall = cpu_seconds(watched), time.perf_counter()
    await asyncio.gather(*(limited() for _ in range(plan.parallel_runs)))
    wall = time.perf_counter() - wall
    figures.parallel_cpu_ms = (cpu_seconds(watched) - cpu) / plan.parallel_runs * 1000
    figures.parallel_rate = plan.parallel_runs / wall
    return figures


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    plan = Plan(50, 100) if args.quick else Plan(200, 200)
    ballast = bytearray(args.ballast << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident, copied on fork
    results = Results()
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL")
           if name in os.environ}
    launchers = Launchers()
    ways: dict[str, dict[str, Figures]] = {}
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as temp:
            folder = Path(temp)
            (folder / "main.py").write_text("")
            tasks = {"py": ([sys.executable, "-u", "main.py"], True),
                     "sh": (["sh", "-c", "date"], False)}
            for task, (argv, python) in tasks.items():
                for way in ("direct", "launcher"):
                    say(f"{task} task, {way}: {plan.runs} sequential runs, "
                        f"{plan.parallel_runs} with {plan.in_flight} in flight")
                    launcher = (await launchers.get(sys.executable)) if way == "launcher" \
                        else None
                    ways.setdefault(task, {})[way] = await measure_way(
                        argv, folder, env, launcher, python, plan)
    finally:
        await launchers.close()
    results.figures["worker_rss_mb"] = round(rss_mb())
    del ballast
    for task, label in (("py", "trivial py task (empty main.py)"), ("sh", "sh -c date")):
        direct, launched = ways[task]["direct"], ways[task]["launcher"]
        for way, figures in (("direct", direct), ("launcher", launched)):
            p50 = statistics.median(figures.latencies_ms)
            p99 = statistics.quantiles(figures.latencies_ms, n=100)[98]
            spawn = statistics.median(figures.spawn_ms)
            key = f"{task}_{way}"
            results.figures.update({
                f"{key}_p50_ms": round(p50, 2), f"{key}_p99_ms": round(p99, 2),
                f"{key}_spawn_p50_ms": round(spawn, 2), f"{key}_cpu_ms": round(figures.cpu_ms, 2),
                f"{key}_rate": round(figures.rate, 1),
                f"{key}_parallel_rate": round(figures.parallel_rate, 1),
                f"{key}_parallel_cpu_ms": round(figures.parallel_cpu_ms, 2)})
            target = ""
            if task == "py" and way == "launcher":
                target = f"{'✓' if p50 <= TARGET_P50_MS else '✗'} p50 ≤ {TARGET_P50_MS} ms"
            results.rows.append(Row(
                f"{label} · {way}", f"{p50:.1f} ms p50",
                f"{p99:.1f} ms p99, spawn {spawn:.2f} ms p50", target,
                f"{plan.runs} sequential: {figures.rate:.0f} runs/s, {figures.cpu_ms:.1f} ms "
                f"CPU/run; {plan.parallel_runs} with {plan.in_flight} in flight: "
                f"{figures.parallel_rate:.0f} runs/s, {figures.parallel_cpu_ms:.1f} ms CPU/run"))
        speedup = statistics.median(direct.latencies_ms) / statistics.median(
            launched.latencies_ms)
        results.figures[f"{task}_speedup"] = round(speedup, 2)
    rate = ways["py"]["launcher"].parallel_rate
    if rate < TARGET_RATE:
        results.problems.append(f"trivial py runs with the launcher: {rate:.0f} runs/s < "
                                f"{TARGET_RATE} (one process, {plan.in_flight} in flight)")
    return results


def render(console: Console, results: Results, args: argparse.Namespace,
           elapsed: float) -> None:
    print_rows(
        console, results.rows, title="lakeport tasks: starting task processes",
        caption=(
            "Start → exit of each run as a worker's attempt sees it (TaskProcess.start, "
            "wait: output pipes drained). direct: spawned from this process "
            f"({results.figures['worker_rss_mb']} MB resident; an idle worker: ~50 MB) with "
            "preexec_fn; launcher: forked by the fork server (a py task in python mode: no "
            "exec, no interpreter start-up). CPU: this process, its children, the launcher "
            "and its children. " + machine_text(args.quick, elapsed)),
        ratio_header="Spread", ratio_width=30, problems=results.problems,
        result_header="Start → exit")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "fewer runs: the whole run takes a few seconds")
    parser.add_argument("--ballast", type=int, default=0, metavar="MIB",
                        help="MiB more this process holds (default: %(default)s)")
    return bench_main(parser.parse_args(argv), lambda args, say: asyncio.run(run(args, say)),
                      render)


if __name__ == "__main__":
    sys.exit(main())
