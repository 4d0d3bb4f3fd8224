"""``lakeport demo``: simulated sensors → raw-sensor-data → step → transformed-data → follower.

All stages run as asyncio tasks in one process on one engine, with a live status table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shlex
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lakeport.cli.common import UrlOption, duration, run, stdout, stop_on_signals
from lakeport.errors import Invalid, Unavailable

if TYPE_CHECKING:
    from lakeport.export.runtime import Exporter
    from lakeport.streams.base import Engine
    from lakeport.streams.flow import Step, StepStats
    from lakeport.streams.types import TopicOptions

RAW_TOPIC = "raw-sensor-data"
TRANSFORMED_TOPIC = "transformed-data"
SIMULATOR = "demo-simulator"
EXPORTER = "demo-exporter"
FOLLOWER = "demo-follower"
STEP = "demo-step"
DEMO_MAX_SIZE = 256 << 20
# (datastream, unit, start value, random walk step)
DATASTREAMS = (
    ("temperature", "°C", 21.0, 0.2),
    ("pressure", "bar", 4.2, 0.02),
    ("vibration", "mm/s", 2.5, 0.1),
)
_TICK = 0.05


def mark_processed(payload: Any) -> Any:
    """The demo's transform: add ``"processed": true`` to each reading."""
    if not isinstance(payload, dict):
        payload = {"value": payload}
    payload["processed"] = True
    return payload


def demo_step() -> Step:
    """The demo's step: raw-sensor-data → :func:`mark_processed` → transformed-data."""
    from lakeport.streams.flow import step

    return step(input=RAW_TOPIC, output=TRANSFORMED_TOPIC, name=STEP)(mark_processed)


def demo_topic_options() -> TopicOptions:
    from lakeport.streams.types import TopicOptions

    return TopicOptions(max_size=DEMO_MAX_SIZE)


def _new_step_stats() -> StepStats:
    from lakeport.streams.flow import StepStats

    return StepStats()


class SensorSimulator:
    """Readings of ``assets`` pumps, each with a few datastreams following a random walk."""

    def __init__(self, assets: int, seed: int | None = None) -> None:
        self.random = random.Random(seed)
        self.values = {
            (f"pump-{number:02d}", name): start + self.random.uniform(-1, 1) * walk * 10
            for number in range(1, assets + 1)
            for name, _, start, walk in DATASTREAMS
        }
        self.units = {name: unit for name, unit, _, _ in DATASTREAMS}
        self.walks = {name: walk for name, _, _, walk in DATASTREAMS}
        self._order = list(self.values)
        self._next = 0

    def readings(self, n: int) -> list[dict[str, Any]]:
        stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        out = []
        for _ in range(n):
            asset, name = key = self._order[self._next]
            self._next = (self._next + 1) % len(self._order)
            value = self.values[key] + self.random.gauss(0, self.walks[name])
            self.values[key] = value
            out.append({"asset": asset, "datastream": name, "value": round(value, 3),
                        "unit": self.units[name], "time": stamp})
        return out


@dataclass
class StageStats:
    """Counters of one demo stage, plus a rate over the last few seconds."""

    count: int = 0
    last_seqno: int = 0
    lag: int | None = None
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    last_payload: Any = None
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=6))

    def rate(self, count: int | None = None) -> float:
        """Messages per second over the last ~3 seconds (call once per status refresh)."""
        now, count = time.monotonic(), self.count if count is None else count
        self._samples.append((now, count))
        first_time, first_count = self._samples[0]
        return (count - first_count) / (now - first_time) if now > first_time else 0.0


async def _idle(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def simulate(engine: Engine, rate: float, assets: int, stop: asyncio.Event,
                   stats: StageStats) -> None:
    """Produce ``rate`` readings per second to the raw topic until ``stop``."""
    simulator = SensorSimulator(assets)
    async with engine.producer(SIMULATOR, RAW_TOPIC, options=demo_topic_options()) as producer:
        started = time.monotonic()
        while not stop.is_set():
            due = int(rate * (time.monotonic() - started)) - stats.count
            if due > 0:
                seqnos = await producer.produce_many(simulator.readings(min(due, 50_000)))
                stats.count += len(seqnos)
                stats.last_seqno = seqnos[-1]
            await _idle(stop, _TICK)


async def follow(engine: Engine, stop: asyncio.Event, stats: StageStats) -> None:
    """Consume the transformed topic, as a downstream reader would, until ``stop``."""
    from lakeport.streams.flow import batches

    async with engine.consumer(FOLLOWER, TRANSFORMED_TOPIC, position="unread",
                               on_no_exists="create", options=demo_topic_options()) as consumer:
        async for batch in batches(consumer, stop, max_n=5000):
            last = batch[-1]
            payload = last.payload
            stats.last_payload = payload
            with contextlib.suppress(KeyError, TypeError, ValueError):
                sent = datetime.fromisoformat(payload["time"])
                stats.latencies_ms.append((datetime.now(UTC) - sent).total_seconds() * 1000)
            await consumer.ack(last.seqno)
            stats.count += len(batch)
            stats.last_seqno = last.seqno


@dataclass
class DemoState:
    url: str
    started: float = field(default_factory=time.monotonic)
    simulated_seconds: float = 0.0
    simulator: StageStats = field(default_factory=StageStats)
    step: StepStats = field(default_factory=_new_step_stats)
    step_row: StageStats = field(default_factory=StageStats)  # lag and rate; counts in step
    follower: StageStats = field(default_factory=StageStats)
    exporter: Exporter | None = None
    lake_stats: StageStats = field(default_factory=StageStats)
    lake: Path | None = None
    server_url: str | None = None
    server_note: str | None = None

    async def refresh_lag(self, engine: Engine) -> None:
        for topic, name, stats in ((RAW_TOPIC, STEP, self.step_row),
                                   (TRANSFORMED_TOPIC, FOLLOWER, self.follower)):
            info = await engine.topic_info(topic)
            stats.lag = next((c.lag for c in info.consumers if c.name == name), None)

    def caught_up(self) -> bool:
        return (self.step.last_input_seqno >= self.simulator.last_seqno
                and self.follower.last_seqno >= self.step.last_output_seqno)

    def exporter_row(self) -> tuple[str, str, StageStats, int, int] | None:
        status = self.exporter.status if self.exporter is not None else None
        if status is None:
            return None
        self.lake_stats.lag = status.lag
        return ("exporter", f"← {TRANSFORMED_TOPIC} → {status.files} files", self.lake_stats,
                status.rows, 0)

    def render(self, limit: float) -> Group:
        elapsed = time.monotonic() - self.started
        until = f" / {limit:g}s" if limit else " (Ctrl-C to stop)"
        server = f" · server {self.server_url}" if self.server_url else ""
        table = Table(title=f"lakeport demo · {elapsed:.1f}s{until} · {self.url}{server}",
                      title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
        for column in ("stage", "topic", "messages", "msgs/s", "lag", "last seqno"):
            table.add_column(column, justify="left" if column in ("stage", "topic") else "right")
        rows = (
            ("simulator", f"→ {RAW_TOPIC}", self.simulator, self.simulator.count,
             self.simulator.last_seqno),
            (STEP, f"→ {TRANSFORMED_TOPIC}", self.step_row, self.step.received,
             self.step.last_output_seqno),
            ("follower", f"← {TRANSFORMED_TOPIC}", self.follower, self.follower.count,
             self.follower.last_seqno),
        )
        exporter = self.exporter_row()
        if exporter is not None:
            rows = (*rows, exporter)
        for name, topic, stats, count, last in rows:
            table.add_row(name, topic, f"{count:,}", f"{stats.rate(count):,.0f}",
                          "-" if stats.lag is None else f"{stats.lag:,}", str(last or "-"))
        latencies = self.follower.latencies_ms
        payload = json.dumps(self.follower.last_payload, ensure_ascii=False)
        tail = Text(
            f"latency {latencies[-1]:.1f} ms · last message {payload}" if latencies
            else "waiting for data…",
            style="dim", overflow="ellipsis", no_wrap=True,
        )
        return Group(table, tail)


async def run_demo(url: str | None, limit: float, rate: float, assets: int,
                   lake: Path | None = None, port: int | None = None) -> DemoState:
    """Run the stages until ``limit`` seconds passed (0: until a signal); with ``lake``, an
    exporter lands transformed-data there as Parquet; with ``port``, the platform server runs
    beside them and records transformed-data as observations."""
    from lakeport.streams import open_engine
    from lakeport.streams.flow import run_step

    async with open_engine(url) as engine:
        state = DemoState(engine.url)
        if lake is not None:
            from lakeport.export.config import ExportConfig
            from lakeport.export.runtime import Exporter

            state.exporter = Exporter(ExportConfig(
                topics=[TRANSFORMED_TOPIC], to=lake.resolve().as_uri(), name=EXPORTER,
                max_delay=2.0, batch_rows=50_000, streams_url=engine.url), engine=engine)
        for topic in (RAW_TOPIC, TRANSFORMED_TOPIC):
            await engine.create_topic(topic, demo_topic_options(), exist_ok=True)
        with stop_on_signals() as interrupted:
            source_stop, pipeline_stop = asyncio.Event(), asyncio.Event()
            tasks = [
                asyncio.create_task(simulate(engine, rate, assets, source_stop, state.simulator)),
                asyncio.create_task(run_step(demo_step(), engine=engine, stop=pipeline_stop,
                                             stats=state.step)),
                asyncio.create_task(follow(engine, pipeline_stop, state.follower)),
            ]
            if state.exporter is not None:
                tasks.append(asyncio.create_task(state.exporter.run(pipeline_stop)))
            if port is not None:
                try:
                    state.server_url = await _start_server(engine.url, port, pipeline_stop,
                                                           tasks)
                except Unavailable as exc:
                    state.server_note = f"{exc}; the demo runs without its server"
                    stdout.print(f"[yellow]note:[/] {state.server_note}", highlight=False)
            try:
                with Live(state.render(limit), console=stdout, refresh_per_second=4) as live:
                    await _watch(state, engine, tasks, interrupted, limit, live)
                    source_stop.set()
                    state.simulated_seconds = time.monotonic() - state.started
                    await _drain(state, engine, tasks)
                    pipeline_stop.set()
                    await asyncio.gather(*tasks)
                    live.update(state.render(limit))
                if not stdout.is_terminal:
                    stdout.print()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    return state


async def _start_server(streams_url: str, port: int, stop: asyncio.Event,
                        tasks: list[asyncio.Task[Any]]) -> str:
    """Start the platform server (recording transformed-data) as one more task; save its URL
    and an API key in the client settings so the client and the CLI find it."""
    from lakeport.server.runner import serve_until
    from lakeport.server.settings import ServerSettings

    settings = ServerSettings(port=port, streams_url=streams_url,
                              record_topics=[TRANSFORMED_TOPIC])
    started = asyncio.Event()
    serving = asyncio.create_task(serve_until(settings, stop, started))
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if serving.done():
        serving.result()  # raises why it did not start
    tasks.append(serving)
    server_url = f"http://127.0.0.1:{port}"
    await _save_client_settings(settings.store_url, server_url)
    return server_url


async def _save_client_settings(store_url: str, server_url: str) -> None:
    """Write ``client.json`` (url, api_key of user ``demo``) under the lakeport home, keeping
    a key saved earlier when it still works."""
    from lakeport.client.config import config_path
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key, user_for_key

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(path.read_text())
    async with Store(store_url) as store:
        key = saved.get("api_key")
        if not isinstance(key, str) or await user_for_key(store, key) is None:
            key = await create_key(store, "demo", "lakeport demo")
    path.write_text(json.dumps({"url": server_url, "api_key": key}, indent=2) + "\n")
    path.chmod(0o600)


def _raise_failed(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _watch(state: DemoState, engine: Engine, tasks: list[asyncio.Task[Any]],
                 interrupted: asyncio.Event, limit: float, live: Live) -> None:
    while not interrupted.is_set():
        if limit and time.monotonic() - state.started >= limit:
            return
        await _idle(interrupted, 0.5)
        _raise_failed(tasks)
        await state.refresh_lag(engine)
        live.update(state.render(limit))


async def _drain(state: DemoState, engine: Engine, tasks: list[asyncio.Task[Any]]) -> None:
    """Give the step and the follower a few seconds to catch up with the simulator."""
    deadline = time.monotonic() + 5
    while not state.caught_up() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        _raise_failed(tasks)
    await state.refresh_lag(engine)


def _command_name() -> str:
    """``lakeport`` if it is on the PATH, else how this process was started (.venv/bin/...)."""
    started_as = sys.argv[0]
    if shutil.which("lakeport") or not started_as.endswith("lakeport"):
        return "lakeport"
    relative = os.path.relpath(started_as)
    return started_as if relative.startswith("..") else relative


def query_command(lake: Path) -> str:
    """A shell command that queries the demo's lake with pyarrow (a lakeport dependency),
    run by this Python (``.venv/bin/python`` after ``scripts/demo``)."""
    python = os.path.relpath(sys.executable)
    python = shlex.quote(sys.executable if python.startswith("..") else python)
    code = (
        "import pyarrow.dataset as ds; "
        f"t = ds.dataset('{lake}').to_table(columns=['asset', 'datastream', 'value_number'])"
        ".group_by(['asset', 'datastream'])"
        ".aggregate([([], 'count_all'), ('value_number', 'mean')])"
        ".sort_by([('asset', 'ascending'), ('datastream', 'ascending')]); "
        "print(*('%-10s %-12s %6s %8s' % r for r in [('asset', 'datastream', 'count', 'mean'), "
        "*((a, d, n, round(m, 2)) for a, d, n, m in zip(*t.to_pydict().values()))]), sep='\\n')"
    )
    return f'{python} -c "{code}"'


def _summary(state: DemoState, url: str | None) -> None:
    elapsed = time.monotonic() - state.started
    latencies = sorted(state.follower.latencies_ms)
    latency = (
        f", end-to-end latency p50 {latencies[len(latencies) // 2]:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)]:.1f} ms" if latencies else ""
    )
    lines = [
        f"[bold]demo done[/] after {elapsed:.1f}s on {state.url}",
        f"  simulator  {state.simulator.count:,} readings → {RAW_TOPIC} "
        f"({state.simulator.count / max(state.simulated_seconds, 1e-9):,.0f} msgs/s)",
        f"  {STEP}  {state.step.received:,} processed → {TRANSFORMED_TOPIC}, "
        f"{state.step.dropped:,} dropped",
        f"  follower   {state.follower.count:,} received{latency}",
    ]
    if state.exporter is not None and state.lake is not None:
        status = state.exporter.status
        lines.append(f"  exporter   {status.rows:,} rows in {status.files:,} Parquet files → "
                     f"{state.lake}/")
        lines += ["Query the lake (count and mean value per asset and datastream):",
                  "  " + escape(query_command(state.lake))]
    command = _command_name()
    if state.server_url is not None:
        lines += [
            f"The platform server ran on {state.server_url} and recorded {TRANSFORMED_TOPIC} as "
            "observations (client settings in LAKEPORT_HOME/client.json). Start it again with:",
            f"  {command} serve --record {TRANSFORMED_TOPIC}"
            + (f" --streams {url}" if url else ""),
            f"  {command} observations latest --sensor pump-01",
        ]
    if not state.url.startswith("memory:"):
        option = f" --url {url}" if url else ""
        lines += [
            "Look around:",
            f"  {command} topics list{option}",
            f"  {command} topics show {TRANSFORMED_TOPIC}{option}",
            f"  {command} topics consume {TRANSFORMED_TOPIC} --payload-only "
            f"--position beginning -n 3{option}",
        ]
    for line in lines:
        stdout.print(line, soft_wrap=True)


def demo(
    duration_: Annotated[str, typer.Option(
        "--duration", help="How long to run, e.g. 30s, 5m; 0 runs until Ctrl-C.")] = "30s",
    rate: Annotated[float, typer.Option(help="Sensor readings per second.")] = 200,
    assets: Annotated[int, typer.Option(help="Simulated pumps (3 datastreams each).")] = 5,
    lake: Annotated[str, typer.Option(
        help="Folder the demo exporter lands transformed-data in as Parquet; '' for none.")
    ] = "lake",
    serve: Annotated[bool, typer.Option(
        help="Run the platform server beside the pipeline (recording transformed-data as "
        "observations), so the data can be queried while the demo runs.")] = True,
    port: Annotated[int, typer.Option(help="Port of the platform server.")] = 8400,
    url: UrlOption = None,
) -> None:
    """Run a live pipeline: simulated sensors → raw-sensor-data → step → transformed-data → lake.

    A simulator produces readings like {"asset": "pump-01", "datastream": "temperature",
    "value": 21.3, "unit": "°C", "time": ...}; the step demo-step adds "processed": true
    into transformed-data; a follower consumes it and an exporter lands it in ./lake as
    Parquet; the platform server (http://127.0.0.1:8400) records it as observations you can
    query while it runs. The table shows counts, rates, lag and files landed.

    Example: lakeport demo --duration 1m --rate 1000
    """
    limit = duration(duration_, "--duration") or 0.0
    if rate <= 0:
        raise Invalid(f"bad --rate {rate:g}: use more than 0 readings per second")
    if assets < 1:
        raise Invalid(f"bad --assets {assets}: use 1 or more")
    folder = Path(lake) if lake else None
    state = run(run_demo(url, limit, rate, assets, folder, port if serve else None))
    state.lake = folder
    _summary(state, url)
