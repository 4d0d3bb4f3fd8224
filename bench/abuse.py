"""What the server's limits buy: one abusive user, with the default limits and with them lifted.

Run from the repository root: ``python bench/abuse.py [--quick] [--json]``.
Two ``lakeport serve`` processes on this machine (SQLite under a temporary folder), one after
the other: one with its default limits, one with ``--max-body``, ``--max-upload``,
``--max-fetch``, ``--header-timeout`` and ``--body-timeout`` as large as the settings take.
Each gets the load of ``tests/integration/server/test_load_rss.py`` (``bench/_abuse_load.py``)
for a fixed window while another user's requests are timed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from _abuse_load import (
    API,
    BIG_BODIES,
    CONSUMERS,
    DECLARED,
    MALLOC_ENV,
    MESSAGE,
    MESSAGES,
    SLOWLORIS,
    Outcome,
    Probe,
    load,
    probe,
    warm_up,
)
from _server_runner import ServerProcess
from topics import Results, Row, bench_main, bench_parser, machine_text, mark, one_line, print_rows

TOPIC = "big"
HUGE = "1048576TiB"  # 2^60 bytes: the settings take any positive size
LIFTED = ["--max-body", HUGE, "--max-upload", HUGE, "--max-fetch", HUGE,
          "--header-timeout", "1e9", "--body-timeout", "1e9"]
HEADER_TIMEOUT = 10.0  # the default
RSS_BOUND_MB = CONSUMERS * 4 + 64  # one 4 MiB fetch reply per idle consumer, 64 MiB for the rest
PROMPT_S = 3.0  # the test's bound on another user's slowest request
SIDES = {"default": "default limits", "lifted": "limits lifted"}


@dataclass
class Plan:
    idle_s: float  # another user's requests timed on the idle server
    window_s: float  # the load's length
    pause_s: float  # between two of another user's requests


def make_plan(args: argparse.Namespace) -> Plan:
    return Plan(2, 13, 0.02) if args.quick else Plan(10, 45, 0.02)


@dataclass
class Side:
    """One server's run: its warm-up statuses, the idle requests, the load, alive after it."""

    warm: tuple[int | None, int | None, int]
    idle: Probe
    outcome: Outcome
    alive: bool


async def make_key(store_url: str, user: str) -> str:
    """An API key of ``user``, made in this process (no second CLI start)."""
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key

    async with Store(store_url) as store:
        return await create_key(store, user)


async def idle_probe(url: str, key: str, plan: Plan) -> Probe:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(plan.idle_s, stop.set)
    return await probe(url, key, "other", stop, plan.pause_s)


def run_side(folder: Path, options: list[str], plan: Plan, say: Callable[[str], None],
             label: str) -> Side:
    store_url = f"sqlite:///{folder / 'store.db'}"
    with ServerProcess(folder, store_url, options, MALLOC_ENV) as server:
        other = asyncio.run(make_key(store_url, "other"))
        with server.client() as http:
            say(f"{label}: a topic of {MESSAGES} messages of {MESSAGE >> 20} MiB")
            http.put(f"{API}/topics/{TOPIC}").raise_for_status()
            payload = "m" * MESSAGE
            for _ in range(MESSAGES):
                http.post(f"{API}/topics/{TOPIC}/messages",
                          json={"payload": payload}).raise_for_status()
        say(f"{label}: warm-up, then another user's requests on the idle server")
        warm = asyncio.run(warm_up(server.url, server.key, TOPIC))
        idle = asyncio.run(idle_probe(server.url, other, plan))
        say(f"{label}: the abusive load for {plan.window_s:g} s")
        outcome = asyncio.run(load(server.url, server.pid, server.key, other, TOPIC,
                                   window=plan.window_s, pause=plan.pause_s))
        try:
            alive = httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        except httpx.HTTPError:
            alive = False
    return Side(warm, idle, outcome, alive)


# -- figures ----------------------------------------------------------------------------------
def percentiles(took: list[float]) -> tuple[float, float, float]:
    """(p50, p99, max) in ms."""
    if not took:
        return float("nan"), float("nan"), float("nan")
    ordered = sorted(took)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def failures(side: Side) -> tuple[int, int]:
    """(requests answered 5xx or never answered, requests sent): the big bodies, the other
    user's requests, the slowloris connections answered 5xx."""
    out = side.outcome
    bad = sum(status is None or status >= 500 for status, _ in out.bodies)
    bad += sum(status is None or status >= 500 for status in out.probe.failed)
    bad += sum(status is not None and status >= 500 for status, _ in out.slow)
    return bad, len(out.bodies) + len(out.probe.took) + out.probe.failed.count(None)


def counts(statuses: list[int | None], none: str) -> str:
    """``401 x10, 413 x10``: how many of each status (``none`` for None)."""
    counted = Counter(none if status is None else str(status) for status in statuses)
    return ", ".join(f"{status} x{n}" for status, n in sorted(counted.items()))


def slowloris_text(side: Side, window: float) -> str:
    slow = side.outcome.slow
    closed = [after for _, after in slow if after is not None]
    if not closed:
        return f"open at the end of the run ({window:g} s)"
    answers = counts([status for status, after in slow if after is not None], "no answer")
    text = f"{max(closed):.1f} s ({answers})"
    if len(closed) < len(slow):
        text += f"; {len(slow) - len(closed)} open at the end ({window:g} s)"
    return text


def figures(results: Results, name: str, side: Side) -> None:
    out = side.outcome
    idle = percentiles(side.idle.took)
    loaded = percentiles(out.probe.took)
    closed = [after for _, after in out.slow if after is not None]
    results.figures.update({
        f"idle_rss_mb_{name}": round(out.baseline / 2**20, 1),
        f"rss_growth_mb_{name}": round((out.peak - out.baseline) / 2**20, 1),
        **{f"other_{kind}_{stat}_ms_{name}": round(value, 2)
           for kind, values in (("idle", idle), ("load", loaded))
           for stat, value in zip(("p50", "p99", "max"), values, strict=True)},
        f"other_p99_ratio_{name}": round(loaded[1] / idle[1], 1),
        f"slowloris_closed_after_s_{name}": (round(max(closed), 2)
                                             if len(closed) == len(out.slow) else None),
        f"failed_requests_{name}": failures(side)[0],
        f"load_s_{name}": round(out.seconds, 1),
    })


def latency_text(f: dict[str, Any], kind: str, name: str) -> str:
    """``p50 / p99 / max ms``."""
    p50, p99, top = (f[f"other_{kind}_{stat}_ms_{name}"] for stat in ("p50", "p99", "max"))
    return f"{p50:,.1f} / {p99:,.1f} / {top:,.0f} ms"


def rows(results: Results, default: Side, lifted: Side, plan: Plan) -> None:
    f: dict[str, Any] = results.figures
    sides = (default, lifted)

    def pair(key: str, text: Callable[[Any], str]) -> tuple[str, str]:
        return text(f[f"{key}_default"]), text(f[f"{key}_lifted"])

    growth = f["rss_growth_mb_default"]
    slowest = f["other_load_max_ms_default"]
    closed = f["slowloris_closed_after_s_default"]
    bad = [failures(side) for side in sides]
    bodies = [counts([status for status, _ in side.outcome.bodies], "none") for side in sides]
    results.rows += [
        Row("server RSS, idle", *pair("idle_rss_mb", lambda v: f"{v:,.0f} MB"), "",
            "after the topic was filled and each kind of request made once"),
        Row("server RSS, peak growth under the load",
            *pair("rss_growth_mb", lambda v: f"+{v:,.0f} MB"),
            f"{mark(growth < RSS_BOUND_MB)} < {RSS_BOUND_MB} MB",
            f"{BIG_BODIES} bodies declaring {DECLARED / 1e6:,.0f} MB (half without a key), "
            f"{SLOWLORIS} slowloris connections, {CONSUMERS} WebSocket consumers fetching from "
            f"a topic of {MESSAGES} x 1 MiB messages and never reading, all at once, for "
            f"{plan.window_s:g} s; RSS sampled every 20 ms"),
        Row("another user, idle: p50 / p99 / max", *(latency_text(f, "idle", n) for n in SIDES),
            "",
            f"GET {API}/me one after another, {plan.pause_s * 1000:g} ms apart, "
            f"for {plan.idle_s:g} s"),
        Row("another user, loaded: p50 / p99 / max",
            *(latency_text(f, "load", n) for n in SIDES),
            f"{mark(slowest < PROMPT_S * 1000)} max < {PROMPT_S:g} s",
            "the same, throughout the load"),
        Row("another user, p99 under load ÷ idle", *pair("other_p99_ratio", lambda v: f"{v}x"),
            "", "p50: " + " / ".join(
                f"{f[f'other_load_p50_ms_{n}'] / f[f'other_idle_p50_ms_{n}']:.1f}x"
                for n in SIDES)),
        Row("slowloris connection open until closed",
            slowloris_text(default, plan.window_s), slowloris_text(lifted, plan.window_s),
            f"{mark(closed is not None and closed < HEADER_TIMEOUT + 5)} "
            f"< {HEADER_TIMEOUT + 5:g} s",
            f"headers sent a byte at a time, 0.1 s apart (header timeout {HEADER_TIMEOUT:g} s "
            "by default): the longest-lived, and the answers"),
        Row("requests answered 5xx or never answered",
            *(f"{n} of {total:,}" for n, total in bad), f"{mark(bad[0][0] == 0)} 0",
            "the big bodies (never: no answer before the load ended) and the other user's "
            f"requests (never: none in 15 s); big bodies answered {bodies[0]} / {bodies[1]}; "
            f"server answering /health after the load: {default.alive} / {lifted.alive}"),
    ]
    if bad[0][0]:
        results.problems.append(f"default limits: {bad[0][0]} requests answered 5xx or never")
    if default.warm != (401, 413, 200):
        results.problems.append(f"default limits: a big body without and with the key, then "
                                f"GET /me, answered {default.warm}, not (401, 413, 200)")


def measure(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    results = Results()
    plan = make_plan(args)
    base = Path(args.dir or tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix="lakeport-bench-abuse-", dir=base) as tmp:
        sides: dict[str, Side] = {}
        for name, options in (("default", []), ("lifted", LIFTED)):
            try:
                sides[name] = run_side(Path(tmp) / name, options, plan, say, SIDES[name])
            except Exception as exc:
                results.problems.append(f"{SIDES[name]}: {one_line(exc)}")
                results.rows.append(Row(SIDES[name], "n/a", notes=f"n/a ({one_line(exc)})"))
                return results
            figures(results, name, sides[name])
    rows(results, sides["default"], sides["lifted"], plan)
    return results


def render(console: Console, results: Results, args: argparse.Namespace, elapsed: float) -> None:
    print_rows(
        console, results.rows,
        title="lakeport server: what its limits buy against one abusive user",
        caption=("Both columns measured in this run against `lakeport serve` processes on "
                 "127.0.0.1 (SQLite), one after the other; limits lifted: "
                 f"{' '.join(LIFTED)}. Both servers run with MALLOC_MMAP_THRESHOLD_ and "
                 "MALLOC_TRIM_THRESHOLD_ at 128 KiB, so freed memory goes back to the OS and "
                 "lakeport's allocator tuning does not hide growth. "
                 + machine_text(args.quick, elapsed)),
        ratio_header=SIDES["lifted"], ratio_width=30, problems=results.problems,
        result_header=SIDES["default"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "a shorter load and idle run: about 40 s")
    return bench_main(parser.parse_args(argv), measure, render)


if __name__ == "__main__":
    sys.exit(main())
