"""Workflows: scheduling overhead of a 1,000-node graph, edge latency of a chain, recovery,
and the same graph through Prefect 3, side by side.

Run from the repository root: ``python bench/workflows.py [--quick] [--json]``.
Everything runs in this one run on this machine: ``lakeport serve --workers 0`` on a free port
(SQLite store, lake and home in a temporary folder), two ``lakeport worker --concurrency 4``
processes (8 slots), a project ``bench`` with the ``sh`` tasks ``noop`` (``true``) and
``fail`` (``exit 1``).

The graph ("fan-out 100 wide, 10 deep"): 10 levels of 100 nodes ``n{level}_{index}``. The 100
nodes of level 0 start at once; each node of a later level runs after two of the level
before, the same index and the next one (wrapping), so every level fans in and out again
(1,000 nodes, 1,900 edges, 10 nodes on the longest path).

Figures:

- overhead per node: the instance's wall time (created → ended, server clock) minus the
  tasks' own run time, per node. The tasks' own run time is the sum of the attempts'
  durations divided by the 8 worker slots: what perfectly packed slots would take. Target
  ≤ 10 ms. For context, the plain task service: the same number of ``noop`` runs started
  directly (``POST .../tasks/noop/start``, 16 requests in flight), wall time per run.
- edge latency: a chain of 100 nodes; for each edge, the next node's first attempt started
  - the previous node's attempt ended (server clock, ms); p50 (target ≤ 20 ms) and p90.
- recovery: the graph with its last node running ``fail``; once the instance failed, POST
  ``recover``; the runs the recovery started (must be 1) and the time from the
  ``recovered`` event to the rerun's start.
- peer: the same graph through Prefect 3 (``bench/_workflow_peer.py``, its own virtualenv
  under ``~/.cache/lakeport-bench``, installed once; an ephemeral API server on a temporary
  SQLite file; tasks run ``sh -c true`` in a flow with the thread task runner, 8 workers);
  peer_ratio = Prefect's wall time / lakeport's (> 1: lakeport is faster). ``--quick``
  skips it (Prefect's ephemeral server alone takes ~20 s to start).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from _server_runner import cpu_seconds
from _workflow_api import (
    Workflows,
    chain,
    edge_gaps_ms,
    grid,
    runs_of,
    task_s,
    wall_s,
)
from _workflow_peer import SLOTS, run_peer
from tasks import LIVE, PARALLEL, LoggedServer, Service, in_parallel, ms_of, percentile, warm_up
from tasks import workers as start_workers
from topics import Results, Row, bench_main, bench_parser, machine_text, one_line, print_rows

TARGET_OVERHEAD_MS = 10  # per node
TARGET_EDGE_MS = 20  # p50


@dataclass
class Plan:
    width: int
    depth: int
    chain: int
    peer: bool
    workers: int = 2
    concurrency: int = 4
    timeout: float = 900  # seconds an instance may take

    @property
    def nodes(self) -> int:
        return self.width * self.depth

    @property
    def total_concurrency(self) -> int:
        return self.workers * self.concurrency


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(20, 10, 30, peer=False, timeout=60)
    return Plan(100, 10, 100, peer=not args.no_peer)


@dataclass
class Figures:
    """What the parts measured (None where a part could not run)."""

    baseline_s: float | None = None  # the plain task runs' wall time
    baseline_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during them
    wall_s: float | None = None  # the graph's instance, created → ended
    task_s: float | None = None  # the sum of its attempts' durations
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the graph
    graph_state: str = ""
    gaps_ms: list[float] = field(default_factory=list)
    chain_wall_s: float | None = None
    recovery_started: int | None = None  # runs the recovery started
    recovery_events: int | None = None  # node runs queued after the recovered event
    recovery_start_ms: float | None = None  # recovered event → the rerun's attempt started
    recovery_node: str = ""
    peer: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# -- the parts -------------------------------------------------------------------------------
async def baseline(service: Service, plan: Plan, say: Callable[[str], None]) -> float:
    """``plan.nodes`` noop runs started directly (PARALLEL in flight): first start sent → the
    last run's end (server clock), seconds."""
    say(f"task service: {plan.nodes:,} noop runs started directly")
    began = time.time()
    ids = set(await in_parallel(plan.nodes, lambda _: service.start("bench", "noop")))
    while await service.runs("bench", "noop", *LIVE, limit=1):
        await asyncio.sleep(0.2)
    runs = [run for run in await service.runs("bench", "noop") if run["id"] in ids]
    return max(ms_of(run["ended"]) for run in runs) / 1000 - began


async def graph(flows: Workflows, plan: Plan, groups: dict[str, list[int]], figures: Figures,
                say: Callable[[str], None]) -> None:
    await flows.apply("fanout", grid(plan.width, plan.depth))
    say(f"graph: {plan.nodes:,} nodes ({plan.width} wide, {plan.depth} deep)")
    before = cpu_seconds(groups)
    instance = await flows.run("fanout")
    status = await flows.until_ended("fanout", instance, plan.timeout, say)
    after = cpu_seconds(groups)
    figures.cpu = {group: after[group] - before[group] for group in after}
    figures.graph_state = status["state"]
    if status["state"] != "succeeded":
        figures.problems.append(f"the graph's instance {instance} ended {status['state']}: "
                                f"{status['counts']}")
    figures.wall_s, figures.task_s = wall_s(status), task_s(status)


async def edges(flows: Workflows, plan: Plan, figures: Figures,
                say: Callable[[str], None]) -> None:
    await flows.apply("chain", chain(plan.chain))
    say(f"chain: {plan.chain} nodes in a line")
    instance = await flows.run("chain")
    status = await flows.until_ended("chain", instance, plan.timeout, say)
    if status["state"] != "succeeded":
        figures.problems.append(f"the chain's instance {instance} ended {status['state']}: "
                                f"{status['counts']}")
    figures.gaps_ms = edge_gaps_ms(status)
    figures.chain_wall_s = wall_s(status)


async def recovery(flows: Workflows, plan: Plan, figures: Figures,
                   say: Callable[[str], None]) -> None:
    nodes = grid(plan.width, plan.depth, last_task="fail")
    figures.recovery_node = nodes[-1]["name"]
    await flows.apply("recovery", nodes)
    say(f"recovery: {plan.nodes:,} nodes, the last one fails")
    instance = await flows.run("recovery")
    first = await flows.until_ended("recovery", instance, plan.timeout, say)
    failed = [node["name"] for node in first["nodes"] if node["state"] != "succeeded"]
    if first["state"] != "failed" or failed != [figures.recovery_node]:
        figures.problems.append(f"the recovery instance {instance} ended {first['state']} "
                                f"with {failed[:5]} not succeeded, not just the last node")
        return
    seen = await flows.events(instance)
    last_id = seen[-1]["id"] if seen else 0
    say("recovery: recover")
    await flows.recover(instance)
    second = await flows.until_ended("recovery", instance, plan.timeout, say)
    new_runs = runs_of(second) - runs_of(first)
    figures.recovery_started = len(new_runs)
    later = await flows.events(instance, last_id)
    figures.recovery_events = sum(1 for e in later if e["node"] and e["state"] == "queued")
    recovered = next((e for e in later if e["state"] == "recovered"), None)
    rerun = [attempt for node in second["nodes"] for attempt in node["attempts"]
             if attempt["run"] in new_runs and attempt["started"]]
    if recovered and rerun:
        figures.recovery_start_ms = (min(ms_of(a["started"]) for a in rerun)
                                     - ms_of(recovered["at"]))
    if figures.recovery_started != 1 or figures.recovery_events != 1:
        figures.problems.append(f"recovering instance {instance} started "
                                f"{figures.recovery_started} runs ({figures.recovery_events} "
                                "node runs queued in its events), not 1")


async def lakeport_part(plan: Plan, folder: Path, figures: Figures,
                        say: Callable[[str], None]) -> None:
    say("starting lakeport serve --workers 0")
    with LoggedServer(folder / "server", f"sqlite:///{folder / 'store.db'}",
                      ["--workers", "0"]) as server:
        service = Service(server)
        flows = Workflows(service)
        try:
            await service.project("bench")
            await service.deploy("bench", "noop", "noop.sh", b"true\n", {"runtime": "sh"})
            await service.deploy("bench", "fail", "fail.sh", b"exit 1\n", {"runtime": "sh"})
            with start_workers(server, plan, folder / "workers") as pids:  # type: ignore[arg-type]
                say(f"{plan.workers} lakeport workers: warming up")
                await warm_up(service, plan)  # type: ignore[arg-type]
                groups = {"server": [server.pid], "workers": pids}
                before = cpu_seconds(groups)
                figures.baseline_s = await baseline(service, plan, say)
                after = cpu_seconds(groups)
                figures.baseline_cpu = {group: after[group] - before[group] for group in after}
                await graph(flows, plan, groups, figures, say)
                await edges(flows, plan, figures, say)
                await recovery(flows, plan, figures, say)
        except Exception:
            print(server.tail(), file=sys.stderr)
            raise
        finally:
            await service.aclose()


# -- measure and show ------------------------------------------------------------------------
def measure(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    plan = make_plan(args)
    figures = Figures()
    results = Results()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="lakeport-bench-workflows-") as tmp:
        try:
            asyncio.run(lakeport_part(plan, Path(tmp), figures, say))
        except Exception as exc:
            results.problems.append(f"lakeport: {one_line(exc)}")
        if plan.peer:  # after lakeport's processes have stopped: the peer has the machine
            try:
                figures.peer = run_peer(plan.width, plan.depth, Path(tmp), say=say)
            except Exception as exc:
                figures.peer = {"error": one_line(exc)}
        else:
            figures.peer = {"error": "skipped (--quick or --no-peer)"}
    results.problems += figures.problems
    fill(results, plan, figures)
    return results


def mark(value: float | None, limit: float, unit: str = " ms") -> str:
    if value is None:
        return f"≤ {limit:g}{unit}"
    return f"{'✓' if value <= limit else '✗'} ≤ {limit:g}{unit}"


def cpu_text(cpu: dict[str, float], count: int, what: str) -> str:
    """Where the CPU went, per node or run."""
    if not cpu:
        return ""
    return (f"; CPU a {what}: server {cpu['server'] / count * 1000:.1f} ms, workers "
            f"{cpu['workers'] / count * 1000:.1f} ms, their launchers and task processes "
            f"{cpu['workers children'] / count * 1000:.1f} ms, this client "
            f"{cpu['client'] / count * 1000:.1f} ms")


def fill(results: Results, plan: Plan, figures: Figures) -> None:
    rows, out = results.rows, results.figures
    n = plan.nodes
    overhead = packed = None
    if figures.wall_s is not None and figures.task_s is not None:
        packed = figures.task_s / plan.total_concurrency
        overhead = (figures.wall_s - packed) / n * 1000
        rows.append(Row(f"graph · {n:,} nodes · {plan.width} wide x {plan.depth} deep",
                        f"{overhead:.1f} ms/node", f"wall {figures.wall_s:.1f} s",
                        mark(overhead, TARGET_OVERHEAD_MS),
                        f"overhead = (wall {figures.wall_s:.2f} s created → ended - tasks' own "
                        f"time {figures.task_s:.2f} s / {plan.total_concurrency} slots = "
                        f"{packed:.2f} s) / {n:,} nodes; {figures.graph_state}; an attempt "
                        f"took {figures.task_s / n * 1000:.0f} ms on average (claimed → the "
                        "worker's report, for sh -c true)" + cpu_text(figures.cpu, n, "node")))
    if figures.baseline_s is not None:
        per_run = figures.baseline_s / n * 1000
        rows.append(Row(f"task service · {n:,} noop runs started directly",
                        f"{per_run:.1f} ms/run", f"wall {figures.baseline_s:.1f} s", "",
                        f"context, not a target: POST .../tasks/noop/start x {n:,} "
                        f"({PARALLEL} in flight), first start sent → last run ended, per run; "
                        "the graph's wall time per node is "
                        + (f"{figures.wall_s / n * 1000:.1f} ms" if figures.wall_s else "n/a")
                        + cpu_text(figures.baseline_cpu, n, "run")))
    p50 = p90 = None
    if figures.gaps_ms:
        p50 = statistics.median(figures.gaps_ms)
        p90 = percentile(figures.gaps_ms, 0.9)
        rows.append(Row(f"chain · {plan.chain} nodes · {len(figures.gaps_ms)} edges",
                        f"{p50:.0f} ms p50", f"p90 {p90:.0f} ms", mark(p50, TARGET_EDGE_MS),
                        "a node's attempt ended → the next node's attempt started (server "
                        f"clock, ms); max {max(figures.gaps_ms):.0f} ms; chain wall "
                        f"{figures.chain_wall_s:.2f} s"))
    started = figures.recovery_started
    if started is not None:
        when = ("" if figures.recovery_start_ms is None
                else f"; recovered → the rerun started {figures.recovery_start_ms:.0f} ms")
        rows.append(Row(f"recovery · {n:,} nodes · last one failed",
                        f"{started} run{'s' if started != 1 else ''} started", "",
                        f"{'✓' if started == 1 else '✗'} = 1",
                        f"runs in the status after recover - before (only "
                        f"{figures.recovery_node} again); node runs queued in the events after "
                        f"it: {figures.recovery_events}" + when))
    peer, ratio = figures.peer, None
    if "wall_s" in peer and figures.wall_s:
        ratio = peer["wall_s"] / figures.wall_s
        peer_overhead = (peer["wall_s"] - peer["task_s"] / SLOTS) / n * 1000
        rows.append(Row(f"Prefect {peer['version']} · the same {n:,}-node graph",
                        f"{peer_overhead:.1f} ms/node", f"wall {peer['wall_s']:.1f} s\n"
                        f"{ratio:.2f}x lakeport's", "",
                        f"the same formula, but its tasks' own time ({peer['task_s']:.2f} s "
                        f"/ {SLOTS}) is timed around subprocess.run inside each task, "
                        f"{peer['task_s'] / max(1, peer['tasks']) * 1000:.0f} ms on average: "
                        "compare wall times; ThreadPoolTaskRunner(8), ephemeral API on SQLite, "
                        f"subprocess sh -c true per task, wait_for upstream futures; "
                        f"{peer['tasks']:,} tasks ran; API start-up {peer['startup_s']:.0f} s "
                        "not counted; peer_ratio = Prefect wall / lakeport wall"))
    else:
        rows.append(Row("Prefect 3 · the same graph", "n/a", "", "",
                        peer.get("error", "did not run")))
    out["nodes"] = n
    out["overhead_ms_per_node"] = None if overhead is None else round(overhead, 2)
    out["graph_wall_s"] = None if figures.wall_s is None else round(figures.wall_s, 2)
    out["graph_task_s"] = None if figures.task_s is None else round(figures.task_s, 2)
    out["graph_cpu_s"] = {group: round(s, 2) for group, s in figures.cpu.items()}
    out["task_baseline_cpu_s"] = {group: round(s, 2) for group, s in figures.baseline_cpu.items()}
    out["task_baseline_ms_per_run"] = (None if figures.baseline_s is None
                                       else round(figures.baseline_s / n * 1000, 2))
    out["edge_latency_p50_ms"] = None if p50 is None else round(p50, 1)
    out["edge_latency_p90_ms"] = None if p90 is None else round(p90, 1)
    out["recovery_runs_started"] = started
    out["recovery_start_ms"] = figures.recovery_start_ms
    out["peer"] = peer.get("version") and f"prefect {peer['version']}"
    out["peer_wall_s"] = round(peer["wall_s"], 2) if "wall_s" in peer else None
    out["peer_ratio"] = None if ratio is None else round(ratio, 2)
    out["peer_note"] = peer.get("error", "")


def render(console: Console, results: Results, args: argparse.Namespace, elapsed: float) -> None:
    plan = make_plan(args)
    scaled = (f"--quick: {plan.nodes} nodes ({plan.width} wide x {plan.depth} deep) instead of "
              f"1,000, a chain of {plan.chain} instead of 100, no peer. " if args.quick else "")
    print_rows(
        console, results.rows,
        title="lakeport workflows: scheduling overhead, edge latency, recovery, next to Prefect",
        caption=(f"All rows measured in this run. lakeport serve --workers 0 (SQLite store) "
                 f"with {plan.workers} lakeport worker processes of concurrency "
                 f"{plan.concurrency}; every node runs the sh task noop (true) in a process of "
                 "its own. The graph: level 0's nodes start at once, each later node runs "
                 "after the same and the next index of the level before. " + scaled
                 + machine_text(args.quick, elapsed)),
        ratio_header="Wall · ratio", ratio_width=22, problems=results.problems,
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "200 nodes, a chain of 30, no peer: under a minute")
    parser.add_argument("--no-peer", action="store_true",
                        help="skip the Prefect run (it installs Prefect once into "
                             "~/.cache/lakeport-bench/prefect-venv)")
    return bench_main(parser.parse_args(argv), measure, render)


if __name__ == "__main__":
    sys.exit(main())
