"""The app SDK on the memory engine: dispatch, acks, dead letters, configuration, health."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lakeport.apps import (
    App,
    ControlChange,
    Number,
    Recommendation,
    String,
    config_topic,
    dead_letter_topic,
    filters,
    send_configuration,
)
from lakeport.apps.manifest import ManifestError
from lakeport.apps.timers import Schedule, Timer, next_cron_fire, next_tick
from lakeport.errors import Closed, Conflict, Invalid, Unavailable
from lakeport.streams import Consumer, Engine, Message, open_engine, register_engine
from lakeport.streams.memory import MemoryEngine
from waiting import WAIT, eventually

pytestmark = pytest.mark.timeout(30)
QUIET = 0.3  # seconds of watching that show something does not happen

SCHEMA = {
    "type": "object",
    "properties": {"threshold": {"type": "number", "minimum": 0}},
    "required": ["threshold"],
}


def make_app(folder: Path, *, name: str = "demo-app", inputs: tuple[str, ...] = ("temperature",),
             control_inputs: tuple[str, ...] = (), runtime_update: bool = False,
             defaults: dict[str, Any] | None = None) -> Path:
    """An app folder with an app.yaml of type app and a configuration schema."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schemas").mkdir(exist_ok=True)
    (folder / "schemas" / "configuration.json").write_text(json.dumps(SCHEMA))
    manifest: dict[str, Any] = {
        "spec_version": "5.0.0",
        "type": "app",
        "name": name,
        "version": "1.0.0",
        "flags": {"enable_runtime_update": {"configuration": runtime_update}},
        "ui_schemas": {"configuration": "schemas/configuration.json"},
        "defaults": {"configuration": defaults if defaults is not None else {"threshold": 5}},
    }
    if inputs:
        manifest["data_streams"] = {"inputs": [{"name": n, "data_type": "number"}
                                               for n in inputs]}
    if control_inputs:
        manifest["control_changes"] = {"inputs": [{"name": n, "data_type": "number"}
                                                  for n in control_inputs]}
    (folder / "app.yaml").write_text(json.dumps(manifest))  # JSON is YAML
    return folder


@pytest.fixture
def url() -> str:
    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return make_app(tmp_path / "demo-app", inputs=("temperature", "speed"))


@pytest.fixture
async def engine(url: str) -> AsyncIterator[Engine]:
    async with open_engine(url) as opened:
        yield opened


async def produce(engine: Engine, topic: str, *payloads: Any) -> list[int]:
    async with engine.producer("test", topic) as producer:
        return await producer.produce_many(list(payloads))


async def read_all(engine: Engine, topic: str) -> list[Any]:
    async with engine.consumer("reader", topic, position="beginning", follow=False,
                               ephemeral=True) as consumer:
        return [m.payload async for m in consumer]


async def acked(engine: Engine, topic: str, name: str = "demo-app") -> int:
    info = await engine.topic_info(topic)
    return next((c.acked for c in info.consumers if c.name == name), 0)


async def until_acked(engine: Engine, topic: str, seqno: int, name: str = "demo-app") -> None:
    """Wait until the consumer ``name`` has acked ``topic`` up to ``seqno``."""

    async def done() -> bool:
        return await acked(engine, topic, name) >= seqno

    assert await eventually(done), \
        f"{name} acked {topic} up to {await acked(engine, topic, name)}, not {seqno}"


async def never_acked(engine: Engine, topic: str) -> bool:
    """Whether nothing of ``topic`` gets acked within ``QUIET`` seconds: a wrong ack would come
    some time after what triggers it, so only watching for a while can show there is none."""

    async def some() -> bool:
        return await acked(engine, topic) > 0

    return not await eventually(some, QUIET)


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], int]:
    """How many messages consumers have handed out so far, by consumer name and topic."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    recv = Consumer.recv

    async def counting_recv(self: Consumer, timeout: float | None = None) -> Message:
        message = await recv(self, timeout)
        counts[self.name, self.topic] += 1
        return message

    monkeypatch.setattr(Consumer, "recv", counting_recv)
    return counts


def temp(asset: str, value: float, datastream: str = "temperature") -> dict[str, Any]:
    return Number(asset=asset, datastream=datastream, value=value).to_payload()


# -- construction ---------------------------------------------------------------------------------
def test_every_exported_name_resolves() -> None:
    import lakeport.apps

    missing = [name for name in lakeport.apps.__all__ if not hasattr(lakeport.apps, name)]
    assert not missing


def test_app_reads_name_configuration_and_subscriptions_from_its_manifest(app_dir: Path) -> None:
    app = App(app_dir=app_dir)
    assert app.name == "demo-app"
    assert app.app_configuration == {"threshold": 5}
    assert [(s.topic, s.datastreams) for s in app.subscriptions] == \
        [("asset-data", ("temperature", "speed"))]


def test_app_takes_its_folder_and_configuration_from_the_environment(
        app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEPORT_APP_DIR", str(app_dir))
    monkeypatch.setenv("LAKEPORT_APP_CONFIGURATION", '{"threshold": 7}')
    app = App()
    assert (app.name, app.app_configuration) == ("demo-app", {"threshold": 7})
    assert App(configuration={"threshold": 9}).app_configuration == {"threshold": 9}


def test_bad_app_setups_are_one_clear_error(app_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Invalid, match=r"App needs a name: no app\.yaml found"):
        App()
    with pytest.raises(Invalid, match=r"configuration\.threshold: -1 is less than the minimum"):
        App(app_dir=app_dir, configuration={"threshold": -1})
    monkeypatch.setenv("LAKEPORT_APP_CONFIGURATION", "[1]")
    with pytest.raises(Invalid, match="LAKEPORT_APP_CONFIGURATION must be a JSON object"):
        App(app_dir=app_dir)
    monkeypatch.delenv("LAKEPORT_APP_CONFIGURATION")
    with pytest.raises(ManifestError, match="not found"):
        App(app_dir=tmp_path / "missing")
    with pytest.raises(Invalid, match="bad timer interval"):
        App("x").timer(interval="soon")
    with pytest.raises(Invalid, match="bad cron expression"):
        App("x").schedule(cron="every minute")
    with pytest.raises(Invalid, match="unknown time zone 'Mars/Olympus'"):
        App("x").schedule(cron="* * * * *", timezone="Mars/Olympus")


# -- reading with handlers -------------------------------------------------------------------------
async def start(app: App) -> asyncio.Task[None]:
    task = asyncio.create_task(app.run())
    assert await eventually(lambda: app.connected or task.done()), f"{app.name} to connect"
    return task


async def test_handlers_get_the_messages_their_filters_select(app_dir: Path, url: str,
                                                             engine: Engine) -> None:
    app = App(app_dir=app_dir, url=url)
    temperatures: list[tuple[str, float]] = []
    pump2: list[str] = []

    @app.stream(inputs=["temperature"])
    async def on_temperature(message: Number) -> None:
        temperatures.append((message.asset, message.value))

    @app.stream(assets="pump-2")
    def on_pump2(message: Number) -> None:  # sync handlers work too
        pump2.append(message.datastream)

    task = await start(app)
    seqnos = await produce(engine, "asset-data", temp("pump-1", 1), temp("pump-2", 2),
                           temp("pump-2", 3, "speed"), temp("pump-1", 4, "pressure"),
                           String(asset="pump-2", datastream="state", value="x").to_payload())
    # every message is acked, also those no handler (or no input of the manifest) wanted
    await until_acked(engine, "asset-data", seqnos[-1])
    app.stop()
    await task
    assert temperatures == [("pump-1", 1), ("pump-2", 2)]
    assert pump2 == ["temperature", "speed"]
    assert await read_all(engine, dead_letter_topic("demo-app")) == []


async def test_a_message_is_acked_only_after_its_handler_and_all_earlier_ones_returned(
        app_dir: Path, url: str, engine: Engine) -> None:
    app = App(app_dir=app_dir, url=url)
    release_first = asyncio.Event()
    handled: list[float] = []

    @app.stream(inputs=["temperature"])
    async def slow(message: Number) -> None:
        await release_first.wait()
        handled.append(message.value)

    @app.stream(inputs=["speed"])
    async def fast(message: Number) -> None:
        handled.append(message.value)

    task = await start(app)
    await produce(engine, "asset-data", temp("a", 1), temp("a", 2, "speed"))
    assert await eventually(lambda: handled == [2]), f"message 2 to be handled: {handled}"
    assert await never_acked(engine, "asset-data")  # 2 is done, but 1 before it is not
    release_first.set()
    await until_acked(engine, "asset-data", 2)
    app.stop()
    await task
    assert handled == [2, 1]


async def test_a_failing_handler_is_retried_then_dead_lettered_and_the_app_goes_on(
        app_dir: Path, url: str, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    app = App(app_dir=app_dir, url=url, max_failures=3, retry_delay=0.001)
    calls: list[float] = []
    unlucky = temp("p", 13)

    @app.stream()
    def handle(message: Number) -> None:
        calls.append(message.value)
        if message.value == 13:
            raise ValueError("unlucky value")

    task = await start(app)
    seqnos = await produce(engine, "asset-data", temp("p", 1), unlucky, temp("p", 2))
    await until_acked(engine, "asset-data", seqnos[-1])
    app.stop()
    await task
    assert calls == [1, 13, 13, 13, 2]
    [record] = await read_all(engine, dead_letter_topic("demo-app"))
    assert record == {"payload": unlucky, "topic": "asset-data", "seqno": seqnos[1],
                      "error": "ValueError: unlucky value",
                      "handler": "test_a_failing_handler_is_retried_then_dead_lettered_and_the_"
                                 "app_goes_on.<locals>.handle",
                      "attempts": 3}
    failures = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(failures) == 3
    assert f"seqno {seqnos[1]}" in failures[0] and "p/temperature" in failures[0]
    assert "unlucky value" in failures[0]


async def test_a_payload_that_is_no_app_message_goes_to_the_dead_letter_topic(
        app_dir: Path, url: str, engine: Engine) -> None:
    app = App(app_dir=app_dir, url=url)
    handled: list[float] = []
    app.stream()(lambda message: handled.append(message.value))
    task = await start(app)
    seqnos = await produce(engine, "asset-data", {"temp": 3}, "hello", temp("p", 1))
    await until_acked(engine, "asset-data", seqnos[-1])
    app.stop()
    await task
    assert handled == [1]
    records = await read_all(engine, dead_letter_topic("demo-app"))
    assert [(r["payload"], r["seqno"]) for r in records] == [({"temp": 3}, 1), ("hello", 2)]
    assert all(r["error"].startswith("not an app message") for r in records)


async def test_control_change_inputs_are_read_from_their_topic(tmp_path: Path, url: str,
                                                               engine: Engine) -> None:
    folder = make_app(tmp_path / "ctl", inputs=(), control_inputs=("setpoint",))
    app = App(app_dir=folder, url=url)
    got: list[Any] = []
    app.stream(filter=filters.is_control_change)(got.append)
    task = await start(app)
    await produce(engine, "control-changes",
                  ControlChange(asset="a", datastream="setpoint", value=1).to_payload(),
                  ControlChange(asset="a", datastream="other", value=2).to_payload())
    await until_acked(engine, "control-changes", 2)
    app.stop()
    await task
    assert [(m.datastream, m.value) for m in got] == [("setpoint", 1)]


async def test_shared_instances_split_the_work_and_exclusive_ones_conflict(
        app_dir: Path, url: str, engine: Engine) -> None:
    count = 2500  # more than one instance takes at once (it reads up to 1000 ahead)
    handled: list[list[float]] = [[], []]
    apps = [App(app_dir=app_dir, url=url, mode="shared") for _ in handled]
    for app, mine in zip(apps, handled, strict=True):

        @app.stream()
        async def handle(message: Number, mine: list[float] = mine) -> None:
            mine.append(message.value)

    tasks = [await start(app) for app in apps]
    seqnos = await produce(engine, "asset-data", *[temp("a", i) for i in range(count)])
    assert await eventually(lambda: sum(map(len, handled)) >= count), \
        f"the instances to handle {count} messages: {list(map(len, handled))}"
    for app in apps:
        app.stop()
    await asyncio.gather(*tasks)
    assert all(handled), f"an instance got no work: {list(map(len, handled))} messages"
    assert sorted(handled[0] + handled[1]) == list(range(count))  # each message once
    assert await acked(engine, "asset-data") == seqnos[-1]

    async with App(app_dir=app_dir, url=url):
        with pytest.raises(Conflict, match="'demo-app' on topic 'asset-data' is already open"):
            await App(app_dir=app_dir, url=url).connect()


# -- reading with stream_filter --------------------------------------------------------------------
async def test_stream_filter_acks_a_message_when_the_loop_moves_on(app_dir: Path, url: str,
                                                                   engine: Engine) -> None:
    await produce(engine, "asset-data", temp("a", 1), temp("b", 2), temp("a", 3))
    seen: list[float] = []
    async with App(app_dir=app_dir, url=url) as app:
        async for message in app.stream_filter(filters.asset_equals("a")):
            seen.append(message.value)
            if message.value == 1:
                assert await never_acked(engine, "asset-data")  # not while its body runs
            if message.value == 3:
                await until_acked(engine, "asset-data", 2)  # 1 is done, 2 was not wanted
                assert await acked(engine, "asset-data") == 2
                break
    assert seen == [1, 3]
    assert await acked(engine, "asset-data") == 3  # leaving the loop finished 3


async def test_stream_filter_ends_when_the_app_stops(app_dir: Path, url: str,
                                                     engine: Engine) -> None:
    await produce(engine, "asset-data", *[temp("a", i) for i in range(5)])
    seen: list[float] = []
    async with App(app_dir=app_dir, url=url) as app:
        async for message in app.stream_filter(filters.is_asset_data_message):
            seen.append(message.value)
            if message.value == 1:
                app.stop()
    assert seen == [0, 1]
    assert await acked(engine, "asset-data") == 2  # the rest is read again next time


async def test_messages_read_ahead_for_a_loop_that_was_left_go_to_the_next_loop(
        app_dir: Path, url: str, engine: Engine, delivered: dict[tuple[str, str], int]) -> None:
    await produce(engine, "asset-data", *[temp("a", i) for i in range(6)])
    seen: list[float] = []
    async with App(app_dir=app_dir, url=url) as app:
        async for message in app.stream_filter():
            seen.append(message.value)
            if message.value == 1:
                assert await eventually(lambda: delivered[app.name, "asset-data"] == 6), \
                    "the app to read ahead up to the last message"
                break
        async with asyncio.timeout(WAIT):  # the messages read ahead must not be lost
            async for message in app.stream_filter():
                seen.append(message.value)
                if message.value == 5:
                    break
    assert seen == [0, 1, 2, 3, 4, 5]
    assert await acked(engine, "asset-data") == 6


async def test_stream_filter_without_auto_ack_acks_when_told(app_dir: Path, url: str,
                                                             engine: Engine) -> None:
    seqnos = await produce(engine, "asset-data", *[temp("a", i) for i in range(5)])
    async with App(app_dir=app_dir, url=url) as app:
        stream = app.stream_filter(auto_ack=False)
        async for message in stream:
            if message.value == 2:
                await stream.ack(message)
                assert await acked(engine, "asset-data") == seqnos[2]
            if message.value == 4:
                break
    # 3 and 4 were never acked: the topic delivers them again
    assert await acked(engine, "asset-data") == seqnos[2]
    async with App(app_dir=app_dir, url=url) as app:
        stream = app.stream_filter(auto_ack=False)
        again = [m.value async for m in _first(stream, 2)]
        await stream.ack()
    assert again == [3, 4]
    assert await acked(engine, "asset-data") == seqnos[-1]


async def _first(stream: AsyncIterator[Any], count: int) -> AsyncIterator[Any]:
    async for item in stream:
        yield item
        count -= 1
        if count == 0:
            return


async def test_reading_needs_a_connection_and_an_input(tmp_path: Path, url: str) -> None:
    with pytest.raises(Closed, match="not connected"):
        App("lonely", url=url).stream_filter()
    async with App("lonely", url=url) as app:
        with pytest.raises(Invalid, match="reads no topic"):
            app.stream_filter()


# -- writing -------------------------------------------------------------------------------------
async def test_publish_writes_each_message_to_its_conventional_topic(
        url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEPORT_TOPIC_PREFIX", "plant-a.")
    async with App("writer", url=url) as app:
        first = await app.publish(Number(asset="a", datastream="t", value=1))
        second = await app.publish(Number(asset="a", datastream="t", value=2))
        await app.publish(Recommendation(asset="a", kind="check"))
        with pytest.raises(Invalid, match="publish takes an app message"):
            await app.publish({"value": 1})  # type: ignore[arg-type]
    assert second == first + 1
    assert [p["value"] for p in await read_all(engine, "plant-a.asset-data")] == [1, 2]
    assert [p["kind"] for p in await read_all(engine, "plant-a.recommendations")] == ["check"]
    topics = {t.name for t in await engine.list_topics()}
    assert {"plant-a.control-changes", "plant-a.data-tags", "plant-a.app-config.writer",
            "plant-a.dead-letter.writer"} <= topics


# -- connecting ------------------------------------------------------------------------------------
class FlakyEngine(MemoryEngine):
    """A memory engine that cannot be reached the first ``failures`` times."""

    failures = 2
    attempts = 0

    async def connect(self) -> None:
        type(self).attempts += 1
        if type(self).attempts <= type(self).failures:
            raise Unavailable(f"engine down (attempt {type(self).attempts})")


async def test_connect_retries_transient_errors_then_gives_up_with_the_last_one(
        caplog: pytest.LogCaptureFixture) -> None:
    register_engine("flaky", FlakyEngine)
    FlakyEngine.attempts, FlakyEngine.failures = 0, 2
    app = App("patient", url=f"flaky://{uuid.uuid4().hex}")
    app.connect_backoff = 0.001
    async with app:
        assert app.connected
    assert FlakyEngine.attempts == 3
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and "engine down (attempt 1)" in retries[0]

    FlakyEngine.attempts, FlakyEngine.failures = 0, 10**6
    app = App("impatient", url="flaky://down", connect_timeout=0.05)
    app.connect_backoff = 0.001
    with pytest.raises(Unavailable, match=r"gave up after 0.05s: engine down \(attempt \d+\)"):
        await app.connect()
    assert not app.connected


async def test_stop_while_connecting_ends_run_quietly() -> None:
    register_engine("flaky", FlakyEngine)
    FlakyEngine.attempts, FlakyEngine.failures = 0, 10**6
    app = App("stopped", url="flaky://down", connect_timeout=60)
    app.connect_backoff = 0.01
    running = asyncio.create_task(app.run())
    assert await eventually(lambda: FlakyEngine.attempts >= 2), "a second connection attempt"
    app.stop()
    await asyncio.wait_for(running, 10)
    assert not app.connected


# -- configuration at run time --------------------------------------------------------------------
async def configure(app: App, url: str, engine: Engine, configuration: dict[str, Any]) -> None:
    """Send a configuration update and wait until the app has dealt with it."""
    seqno = await send_configuration(app.name, configuration, url=url)
    await until_acked(engine, config_topic(app.name), seqno, app.name)


async def test_runtime_configuration_update_is_applied_and_announced(
        tmp_path: Path, url: str, engine: Engine) -> None:
    folder = make_app(tmp_path / "live", runtime_update=True)
    updates: list[dict[str, Any]] = []
    async with App(app_dir=folder, url=url) as app:
        app.on_app_configuration = updates.append
        await configure(app, url, engine, {"threshold": 42})
        assert app.app_configuration == {"threshold": 42}
        assert updates == [{"threshold": 42}]


async def test_runtime_configuration_update_is_refused_when_the_manifest_forbids_it(
        app_dir: Path, url: str, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    updates: list[dict[str, Any]] = []
    async with App(app_dir=app_dir, url=url) as app:
        app.on_app_configuration = updates.append
        await configure(app, url, engine, {"threshold": 42})
        assert app.app_configuration == {"threshold": 5}
    assert updates == []
    assert ("configuration update refused: demo-app does not allow runtime configuration "
            "updates (flags.enable_runtime_update.configuration is false)") in caplog.messages


async def test_an_invalid_runtime_configuration_is_refused_with_its_problems(
        tmp_path: Path, url: str, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    folder = make_app(tmp_path / "live", runtime_update=True)
    async with App(app_dir=folder, url=url) as app:
        app.on_app_configuration = pytest.fail
        await configure(app, url, engine, {"threshold": "high"})
        assert app.app_configuration == {"threshold": 5}
    [line] = [m for m in caplog.messages if "refused" in m]
    assert "configuration.threshold: 'high' is not of type 'number'" in line


async def test_configuration_updates_sent_before_the_app_runs_are_not_applied(
        tmp_path: Path, url: str, engine: Engine) -> None:
    folder = make_app(tmp_path / "live", runtime_update=True)
    await send_configuration("demo-app", {"threshold": 1}, url=url)
    async with App(app_dir=folder, url=url) as app:
        await configure(app, url, engine, {"threshold": 2})
        assert app.app_configuration == {"threshold": 2}
    with pytest.raises(Invalid, match="must be a JSON object"):
        await send_configuration("demo-app", [1], url=url)  # type: ignore[arg-type]


# -- callbacks, timers, health ------------------------------------------------------------------
async def test_callbacks_timers_and_stop(url: str) -> None:
    events: list[str] = []
    app = App("clock", url=url)
    app.on_connect = lambda: events.append("connect")

    async def on_disconnect() -> None:
        events.append("disconnect")

    app.on_disconnect = on_disconnect
    ticks: list[int] = []

    @app.timer(interval="10ms")
    async def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            app.stop()

    await asyncio.wait_for(app.run(), 10)
    assert events == ["connect", "disconnect"]
    assert len(ticks) >= 3


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_health_endpoints_answer_live_ready_and_404(url: str) -> None:
    app = App("healthy", url=url, health_port=0)
    await app.connect()
    try:
        port = app.health_port
        assert port
        assert await asyncio.to_thread(get, port, "/health/live") == (200, {"status": "live"})
        assert await asyncio.to_thread(get, port, "/health/ready") == (200, {"status": "ready"})
        status, _ = await asyncio.to_thread(get, port, "/metrics")
        assert status == 404
    finally:
        await app.disconnect()


async def test_health_ready_is_503_until_connected(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    register_engine("flaky", FlakyEngine)
    FlakyEngine.attempts, FlakyEngine.failures = 0, 10**6
    monkeypatch.setenv("LAKEPORT_HEALTH_PORT", "0")
    app = App("waiting", url="flaky://down", connect_timeout=30)
    app.connect_backoff = 0.01
    connecting = asyncio.create_task(app.connect())
    assert await eventually(lambda: app.health_port), "the health server to listen"
    try:
        port = app.health_port
        assert port
        assert (await asyncio.to_thread(get, port, "/health/live"))[0] == 200
        assert await asyncio.to_thread(get, port, "/health/ready") == \
            (503, {"status": "not ready"})
    finally:
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
    assert not app.connected



# -- time: drift-free timers and cron schedules ----------------------------------------------
class FakeClock:
    """A monotonic clock that only moves when slept on (plus ``oversleep``) or told to."""

    def __init__(self, oversleep: float = 0.0) -> None:
        self.now = 0.0
        self.oversleep = oversleep

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + self.oversleep


async def test_timer_ticks_on_its_grid_despite_late_wake_ups() -> None:
    clock = FakeClock(oversleep=0.3)
    calls: list[float] = []
    timer = Timer(lambda: calls.append(clock.now), 1.0)
    await timer.run(clock=clock, sleep=clock.sleep, ticks=5)
    # each tick is late by the oversleep only, never by the sum of all earlier ones
    assert calls == pytest.approx([1.3, 2.3, 3.3, 4.3, 5.3])


async def test_timer_skips_ticks_missed_by_a_slow_handler_instead_of_bunching_them() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def handler() -> None:
        calls.append(clock.now)
        if len(calls) == 2:
            clock.now += 2.5  # runs from 2.0 to 4.5: the ticks at 3 and 4 are missed

    await Timer(handler, 1.0).run(clock=clock, sleep=clock.sleep, ticks=5)
    assert calls == pytest.approx([1, 2, 5, 6, 7])


def test_next_tick_is_the_next_grid_point() -> None:
    assert next_tick(10.0, 2.0, 10.0) == 12.0
    assert next_tick(10.0, 2.0, 13.9) == 14.0
    assert next_tick(10.0, 2.0, 14.0) == 16.0


def test_cron_fire_times_follow_the_time_zone_across_daylight_saving() -> None:
    berlin = "Europe/Berlin"
    summer = next_cron_fire("0 9 * * *", berlin, datetime(2026, 7, 1, tzinfo=UTC))
    winter = next_cron_fire("0 9 * * *", berlin, datetime(2026, 1, 1, tzinfo=UTC))
    assert summer.astimezone(UTC) == datetime(2026, 7, 1, 7, tzinfo=UTC)
    assert winter.astimezone(UTC) == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert (summer.hour, winter.hour) == (9, 9)
    every5 = next_cron_fire("*/5 * * * *", None, datetime(2026, 1, 1, 10, 2, 30, tzinfo=UTC))
    assert every5 == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    with pytest.raises(Invalid, match="aware"):
        next_cron_fire("* * * * *", None, datetime(2026, 1, 1))


async def test_schedule_runs_at_each_fire_time_and_skips_missed_ones() -> None:
    wall = [datetime(2026, 1, 1, 10, 2, tzinfo=UTC)]
    fired: list[datetime] = []

    async def sleep(seconds: float) -> None:
        wall[0] += timedelta(seconds=seconds)

    async def handler() -> None:
        fired.append(wall[0])
        if len(fired) == 1:
            wall[0] += timedelta(minutes=12)  # a long run: 10:10 and 10:15 are missed
        if len(fired) == 3:
            raise asyncio.CancelledError

    schedule = Schedule(handler, "*/5 * * * *", "Europe/Berlin")
    with pytest.raises(asyncio.CancelledError):
        await schedule.run(now=lambda: wall[0], sleep=sleep)
    assert [f.strftime("%H:%M") for f in fired] == ["10:05", "10:20", "10:25"]
