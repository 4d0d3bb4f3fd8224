"""The simulator's value patterns, its plan per app type, and CSV rows checked before sending."""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path

import pytest

from lakeport.apps.csv_replay import CsvPlan, convert_value, infer_type, read_rows, send_rows
from lakeport.apps.manifest import load_manifest
from lakeport.apps.messages import parse_message
from lakeport.apps.simulator import (
    PATTERNS,
    Series,
    Simulator,
    describe_counts,
    parse_rate,
    pattern_value,
    plan_series,
    random_walk,
    simulate,
    typed_value,
)
from lakeport.errors import Invalid, NotFound
from lakeport.streams import open_engine

pytestmark = pytest.mark.timeout(30)


# -- rates and patterns --------------------------------------------------------------------
@pytest.mark.parametrize(("text", "per_second"), [
    ("100/s", 100.0), ("100", 100.0), ("600/m", 10.0), ("600/min", 10.0), ("7200/h", 2.0),
    (" 2.5 / s ", 2.5), (50, 50.0),
])
def test_parse_rate(text: str | int, per_second: float) -> None:
    assert parse_rate(text) == per_second


@pytest.mark.parametrize("text", ["fast", "0/s", "-5/s", "10/d", "", "1e3/s"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(Invalid, match="bad rate"):
        parse_rate(text)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_patterns_are_functions_of_asset_and_step(pattern: str) -> None:
    forward = [pattern_value(pattern, asset, step) for asset in (1, 2) for step in range(50)]
    backward = [pattern_value(pattern, asset, step)
                for asset in (2, 1) for step in reversed(range(50))]
    assert forward == list(reversed(backward))
    assert all(math.isfinite(value) for value in forward)


def test_counter_counts_steps() -> None:
    assert [pattern_value("counter", 3, step) for step in range(4)] == [0.0, 1.0, 2.0, 3.0]


def test_ramp_rises_by_one_and_wraps_at_100() -> None:
    values = [pattern_value("ramp", 1, step) for step in range(101)]
    assert values[:3] == [1.0, 2.0, 3.0]
    assert values[98:101] == [99.0, 0.0, 1.0]
    assert pattern_value("ramp", 5, 0) == 5.0


def test_sine_swings_around_50_with_a_period_of_60_steps() -> None:
    values = [pattern_value("sine", 1, step) for step in range(60)]
    assert 79 < max(values) <= 80 and 20 <= min(values) < 21
    assert pattern_value("sine", 1, 7) == pytest.approx(pattern_value("sine", 1, 67))
    assert pattern_value("sine", 1, 0) != pytest.approx(pattern_value("sine", 2, 0))


def test_random_walk_wanders_near_50_and_differs_per_asset() -> None:
    walk = [random_walk(4, step) for step in range(20_000)]
    assert min(walk) > 20 and max(walk) < 80
    steps = [abs(b - a) for a, b in itertools.pairwise(walk)]
    assert max(steps) < 5 and len(set(walk)) > 19_000
    assert [random_walk(5, step) for step in range(20)] != walk[:20]


def test_unknown_pattern() -> None:
    with pytest.raises(Invalid, match="bad pattern 'square': use one of random, sine"):
        pattern_value("square", 1, 0)


def test_typed_values() -> None:
    assert typed_value("number", 12.34567, 0) == 12.346
    assert typed_value("string", 10.0, 0) == "idle"
    assert typed_value("string", 80.0, 0) == "alarm"
    assert typed_value("boolean", 49.0, 0) is False
    assert typed_value("boolean", 51.0, 0) is True
    assert typed_value("object", 1.5, 7) == {"value": 1.5, "step": 7, "quality": "good"}


# -- messages ------------------------------------------------------------------------------
def test_messages_cycle_series_then_assets_then_steps() -> None:
    series = [Series("asset-data", "temperature", "number", "°C"),
              Series("control-changes", "setpoint", "number", control=True)]
    simulator = Simulator(series, assets=3, pattern="counter")
    sent = [simulator.message(n) for n in range(12)]
    typed = [(topic, parse_message(payload)) for topic, payload in sent]
    assert [(t, m.asset, m.datastream, m.value) for t, m in typed[:6]] == [
        ("asset-data", "asset-01", "temperature", 0.0),
        ("control-changes", "asset-01", "setpoint", 0.0),
        ("asset-data", "asset-02", "temperature", 0.0),
        ("control-changes", "asset-02", "setpoint", 0.0),
        ("asset-data", "asset-03", "temperature", 0.0),
        ("control-changes", "asset-03", "setpoint", 0.0),
    ]
    assert typed[6][1].value == 1.0
    assert typed[0][1].unit == "°C"
    assert typed[1][1].type == "control_change"


def test_simulator_needs_something_to_send() -> None:
    with pytest.raises(Invalid, match="nothing to simulate"):
        Simulator([], assets=1, pattern="random")
    with pytest.raises(Invalid, match="bad number of assets 0"):
        Simulator([Series("asset-data", "x", "number")], assets=0, pattern="random")


def test_describe_counts() -> None:
    assert describe_counts({"asset-data": 100, "control-changes": 50}) == \
        "sent 150 messages to asset-data, control-changes"
    assert describe_counts({"asset-data": 1}) == "sent 1 message to asset-data"
    assert describe_counts({}) == "sent 0 messages"


async def test_simulate_sends_exactly_the_total() -> None:
    simulator = Simulator([Series("asset-data", "temperature", "number")], 4, "ramp")
    async with open_engine("memory://simulate-total") as engine:
        seen: list[int] = []
        counts = await simulate(engine, simulator, rate=2000, total=250, stop=asyncio.Event(),
                                on_sent=seen.append)
        assert counts == {"asset-data": 250}
        assert seen[-1] == 250
        async with engine.consumer("check", "asset-data", position="beginning",
                                   follow=False) as consumer:
            payloads = [message.payload async for message in consumer]
    assert len(payloads) == 250
    assert {p["asset"] for p in payloads} == {"asset-01", "asset-02", "asset-03", "asset-04"}


# -- plans per app type --------------------------------------------------------------------
def _write_app(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.yaml").write_text(
        "spec_version: 5.0.0\nname: demo\ntitle: Demo\ndescription: d\nversion: 1.0.0\n" + body,
        encoding="utf-8")
    return folder


APP_YAML = """type: app
data_streams:
  inputs:
    - {name: temperature, data_type: number, unit: °C}
    - {name: status, data_type: string}
  outputs:
    - {name: temperature_avg, data_type: number}
control_changes:
  inputs:
    - {name: speed, data_type: number, unit: rpm}
"""
EXPORTER_YAML = """type: exporter
exporter_io:
  - {name: default, data_types: [number, boolean]}
  - {name: blobs, data_types: [object]}
"""
IMPORTER_YAML = """type: importer
importer_io:
  - {name: default, data_types: [number], control: true}
  - {name: readonly, data_types: [string]}
"""


def test_plan_for_an_app_follows_its_inputs(tmp_path: Path) -> None:
    series = plan_series(load_manifest(_write_app(tmp_path / "a", APP_YAML)))
    assert [(s.topic, s.datastream, s.data_type, s.unit, s.control) for s in series] == [
        ("asset-data", "temperature", "number", "°C", False),
        ("asset-data", "status", "string", None, False),
        ("control-changes", "speed", "number", "rpm", True),
    ]


def test_plan_for_an_exporter_covers_every_accepted_data_type(tmp_path: Path) -> None:
    series = plan_series(load_manifest(_write_app(tmp_path / "e", EXPORTER_YAML)))
    assert sorted((s.datastream, s.data_type) for s in series) == [
        ("payload", "object"), ("running", "boolean"), ("temperature", "number")]
    assert {s.topic for s in series} == {"asset-data"}


def test_plan_for_an_importer_sends_control_changes(tmp_path: Path) -> None:
    series = plan_series(load_manifest(_write_app(tmp_path / "i", IMPORTER_YAML)))
    assert [(s.topic, s.datastream, s.data_type, s.control) for s in series] == [
        ("control-changes", "setpoint", "number", True)]


def test_plan_for_docker_is_empty(tmp_path: Path) -> None:
    assert plan_series(load_manifest(_write_app(tmp_path / "d", "type: docker\n"))) == []


def test_topic_prefix_applies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEPORT_TOPIC_PREFIX", "plant-a.")
    series = plan_series(load_manifest(_write_app(tmp_path / "e", EXPORTER_YAML)))
    assert {s.topic for s in series} == {"plant-a.asset-data"}


# -- CSV -----------------------------------------------------------------------------------
def test_convert_and_infer_values() -> None:
    assert convert_value("21.5", "number") == 21.5
    assert convert_value("TRUE", "boolean") is True and convert_value("0", "boolean") is False
    assert convert_value('{"a": 1}', "object") == {"a": 1}
    assert convert_value("x y", "string") == "x y"
    for text, data_type in (("abc", "number"), ("nan", "number"), ("maybe", "boolean"),
                            ("[1]", "object")):
        with pytest.raises(ValueError):
            convert_value(text, data_type)
    every = ("number", "string", "boolean", "object")
    assert [infer_type(t, every) for t in ("1.5", "true", '{"a":1}', "on")] == \
        ["number", "boolean", "object", "string"]
    assert infer_type("5", ("string",)) == "string"
    with pytest.raises(ValueError):
        infer_type("abc", ("number", "boolean"))


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_are_typed_by_the_manifest(tmp_path: Path) -> None:
    plan = CsvPlan(load_manifest(_write_app(tmp_path / "a", APP_YAML)))
    path = _csv(tmp_path, "time,asset,datastream,value,unit\n"
                "2026-01-01T10:00:00Z,pump-1,temperature,21.5,\n"
                "\n"
                "1767261601,pump-1,status,42,\n"
                ",pump-2,speed,1500,rpm/min\n")
    rows = read_rows(path, plan)
    assert [(r.line, r.topic, r.datastream, r.value, r.unit, r.control) for r in rows] == [
        (2, "asset-data", "temperature", 21.5, "°C", False),
        (4, "asset-data", "status", "42", None, False),
        (5, "control-changes", "speed", 1500.0, "rpm/min", True),
    ]
    assert rows[0].time is not None and rows[0].time.isoformat() == "2026-01-01T10:00:00+00:00"
    assert rows[1].time is not None and rows[1].time.isoformat() == "2026-01-01T10:00:01+00:00"
    assert rows[2].time is None
    assert parse_message(rows[2].payload()).type == "control_change"


@pytest.mark.parametrize(("text", "error"), [
    ("time,asset,datastream,value\n2026-01-01T10:00:00Z,p,temperature,1\n"
     "2026-01-01T10:00:01Z,p,temperature,abc\n",
     "data.csv line 3: value 'abc' is not a number for datastream temperature; "
     "nothing was sent"),
    ("time,asset,datastream,value\nyesterday,p,temperature,1\n",
     "data.csv line 2: time 'yesterday' is not an ISO 8601 time"),
    ("time,asset,datastream,value\n,p,pressure,1\n",
     "data.csv line 2: datastream 'pressure' is not an input of app demo "
     "(inputs: temperature, status, speed)"),
    ("time,asset,datastream,value\n,p,temperature\n",
     "data.csv line 2: 3 fields, expected 4 (time,asset,datastream,value)"),
    ("time,asset,value\n", "data.csv line 1: missing column 'datastream'"),
    ("time,asset,datastream,value,quality\n", "data.csv line 1: unknown column 'quality'"),
    ("", "data.csv: no header"),
    ("time,asset,datastream,value\n,,temperature,1\n", "data.csv line 2: asset is empty"),
    ("time,asset,datastream,value\n,p,temperature,x\n,p,temperature,y\n,p,temperature,z\n",
     "data.csv line 2: value 'x' is not a number for datastream temperature "
     "(2 more bad lines)"),
])
def test_csv_errors_name_the_line(tmp_path: Path, text: str, error: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    plan = CsvPlan(load_manifest(_write_app(tmp_path / "a", APP_YAML)))
    monkeypatch.chdir(tmp_path)
    _csv(tmp_path, text)
    with pytest.raises(Invalid) as caught:
        read_rows("data.csv", plan)
    assert str(caught.value).startswith(error), str(caught.value)


def test_csv_for_an_exporter_infers_types_it_accepts(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    plan = CsvPlan(load_manifest(_write_app(tmp_path / "e", EXPORTER_YAML)))
    monkeypatch.chdir(tmp_path)
    _csv(tmp_path, "time,asset,datastream,value\n,p,a,1\n,p,b,false\n,p,c,{\"x\": 2}\n")
    assert [(r.data_type, r.value) for r in read_rows("data.csv", plan)] == [
        ("number", 1.0), ("boolean", False), ("object", {"x": 2})]
    _csv(tmp_path, "time,asset,datastream,value\n,p,a,hello\n")
    with pytest.raises(Invalid, match="line 2: value 'hello' is a string, but demo accepts "
                       "only number, boolean, object"):
        read_rows("data.csv", plan)


def test_csv_replay_needs_times_and_a_file(tmp_path: Path) -> None:
    plan = CsvPlan(load_manifest(_write_app(tmp_path / "a", APP_YAML)))
    path = _csv(tmp_path, "time,asset,datastream,value\n,p,temperature,1\n")
    with pytest.raises(Invalid, match="line 2: time is empty: --replay needs a time"):
        read_rows(path, plan, need_time=True)
    with pytest.raises(NotFound, match="no such file"):
        read_rows(tmp_path / "missing.csv", plan)


async def test_send_rows_in_order(tmp_path: Path) -> None:
    plan = CsvPlan(load_manifest(_write_app(tmp_path / "a", APP_YAML)))
    lines = "".join(f"2026-01-01T10:00:{i:02d}Z,p,temperature,{i}\n" for i in range(5))
    rows = read_rows(_csv(tmp_path, "time,asset,datastream,value\n" + lines), plan)
    async with open_engine("memory://csv-rows") as engine:
        counts = await send_rows(engine, rows, replay=True, speed=1000)
        async with engine.consumer("check", "asset-data", position="beginning",
                                   follow=False) as consumer:
            values = [message.payload["value"] async for message in consumer]
    assert counts == {"asset-data": 5}
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_send_rows_at_a_rate_and_stop_early(tmp_path: Path) -> None:
    plan = CsvPlan(load_manifest(_write_app(tmp_path / "a", APP_YAML)))
    lines = "".join(f",p,speed,{i}\n" for i in range(30))
    rows = read_rows(_csv(tmp_path, "time,asset,datastream,value\n" + lines), plan)
    async with open_engine("memory://csv-rate") as engine:
        assert await send_rows(engine, rows, rate=5000) == {"control-changes": 30}
        stop = asyncio.Event()
        stop.set()
        assert await send_rows(engine, rows, rate=1, stop=stop) == {"control-changes": 0}
