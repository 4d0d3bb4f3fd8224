"""Tests of the exporter: run them with ``python -m pytest test_app.py``."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from lakeport.apps import App, Boolean, DataMessage, Number, Object, String
from lakeport.errors import Invalid
from lakeport.export.runtime import Exporter
from lakeport.streams import open_engine

from main import export_config, run, sink_url

APP_DIR = Path(__file__).parent
NOON = datetime(2026, 1, 1, 12, tzinfo=UTC)
READINGS: list[DataMessage] = [
    Number(asset="asset-01", datastream="temperature", value=21.5, unit="°C", time=NOON),
    String(asset="asset-01", datastream="status", value="running", time=NOON),
    Boolean(asset="asset-02", datastream="running", value=True, time=NOON),
    Object(asset="asset-02", datastream="payload", value={"a": 1}, time=NOON),
    *[Number(asset="asset-03", datastream="pressure", value=float(n), time=NOON)
      for n in range(3)],
]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter keeps its status and batch intents under LAKEPORT_HOME."""
    monkeypatch.setenv("LAKEPORT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LAKEPORT_TOPIC_PREFIX", raising=False)


async def produce(url: str, readings: list[DataMessage]) -> None:
    async with open_engine(url) as engine:
        await engine.create_topic("asset-data", exist_ok=True)
        async with engine.producer("test", "asset-data") as producer:
            await producer.produce_many([reading.to_payload() for reading in readings])


def parquet_rows(folder: Path) -> list[dict[str, object]]:
    files = sorted(folder.rglob("*.parquet"), key=lambda path: int(path.stem.split("-")[-1]))
    return [row for path in files for row in pq.read_table(path).to_pylist()]


def test_defaults_export_asset_data_to_the_output_folder(tmp_path: Path) -> None:
    config = export_config({}, "my-exporter", "memory://", tmp_path)
    assert config.topics == ["asset-data"]
    assert config.to == (tmp_path / "output").resolve().as_uri()
    assert config.name == "my-exporter"  # its consumer name and `lakeport export status` name
    assert (config.format, config.batch_rows, config.max_delay) == ("parquet", 100_000, 60)
    manifest_defaults = export_config({"name": None, "until_idle": None, "to": "output"},
                                      "my-exporter", "memory://", tmp_path)
    assert manifest_defaults == config


def test_every_option_reaches_the_runtime(tmp_path: Path) -> None:
    config = export_config({
        "to": "s3://bucket/raw", "topics": ["asset-data", "transformed-data"],
        "name": "lake-feed", "format": "jsonl", "batch_rows": 500, "batch_bytes": "1MB",
        "max_delay": "10s", "partition_by_asset": True, "sink_options": {"region": "eu-west-1"},
        "until_idle": "2m", "retry_initial": "250ms", "retry_max": 60, "status_interval": 5,
    }, "my-exporter", "memory://", tmp_path)
    assert (config.to, config.topics, config.name, config.format) == \
        ("s3://bucket/raw", ["asset-data", "transformed-data"], "lake-feed", "jsonl")
    assert (config.batch_rows, config.batch_bytes, config.max_delay) == (500, 1 << 20, 10)
    assert (config.partition_by_asset, config.sink_options) == (True, {"region": "eu-west-1"})
    assert (config.until_idle, config.retry_initial, config.retry_max, config.status_interval) \
        == (120, 0.25, 60, 5)
    assert config.streams_url == "memory://"


def test_a_folder_is_relative_to_the_app_and_a_url_stays(tmp_path: Path) -> None:
    assert sink_url("lake/raw", tmp_path) == (tmp_path / "lake" / "raw").resolve().as_uri()
    assert sink_url("/data/export", tmp_path) == "file:///data/export"
    assert sink_url("s3://bucket/prefix", tmp_path) == "s3://bucket/prefix"
    assert sink_url("dbfs:/Volumes/main/raw/landing", tmp_path) == \
        "dbfs:/Volumes/main/raw/landing"


def test_topics_follow_the_deployment_prefix(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEPORT_TOPIC_PREFIX", "plant-a.")
    assert export_config({}, "x", "memory://", tmp_path).topics == ["plant-a.asset-data"]


def test_a_bad_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match=r"configuration\.batch_rows: .*greater than 0"):
        export_config({"batch_rows": 0}, "x", "memory://", tmp_path)
    with pytest.raises(Invalid, match=r"configuration\.compression: Extra inputs"):
        export_config({"compression": "gzip"}, "x", "memory://", tmp_path)


def test_readings_land_as_parquet_rows(tmp_path: Path) -> None:
    url = f"memory://{uuid.uuid4().hex}"
    asyncio.run(produce(url, READINGS))
    config = export_config({"batch_rows": 3, "until_idle": 0.3}, "my-exporter", url, tmp_path)
    status = asyncio.run(Exporter(config).run())  # until the topic is drained and idle

    assert (status.state, status.rows, status.files) == ("stopped", 7, 3)
    folder = tmp_path / "output" / "asset-data" / "date=2026-01-01"
    assert sorted(path.name for path in folder.iterdir()) == [
        "asset-data-1-3.parquet", "asset-data-4-6.parquet", "asset-data-7-7.parquet"]
    rows = parquet_rows(tmp_path / "output")
    assert [row["seqno"] for row in rows] == list(range(1, 8))
    first, text, flag, payload = rows[:4]
    assert (first["asset"], first["datastream"], first["value_number"], first["unit"]) == \
        ("asset-01", "temperature", 21.5, "°C")
    assert first["time"] == NOON and first["value_string"] is None
    assert (text["value_string"], flag["value_bool"]) == ("running", True)
    assert json.loads(payload["value_object"]) == {"a": 1}


def test_the_app_runs_the_exporter_until_it_stops(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEPORT_HEALTH_HOST", "127.0.0.1")
    url = f"memory://{uuid.uuid4().hex}"
    configuration = {"to": str(tmp_path / "lake"), "batch_rows": len(READINGS)}

    async def scenario() -> tuple[int, object]:
        app = App(app_dir=APP_DIR, url=url, configuration=configuration, health_port=0,
                  handle_signals=False, subscriptions=[])
        exporter = Exporter(export_config(app.app_configuration, app.name, app.url, APP_DIR))
        running = asyncio.create_task(run(app, exporter))
        await produce(url, READINGS)
        for _ in range(600):  # until the full batch landed
            if exporter.status.rows == len(READINGS) or running.done():
                break
            await asyncio.sleep(0.05)
        ready = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{app.health_port}/health/ready",
                                           timeout=5).status)
        app.stop()  # what SIGTERM does
        return ready, await running

    ready, status = asyncio.run(scenario())
    assert ready == 200
    assert (status.state, status.rows) == ("stopped", len(READINGS))
    assert len(parquet_rows(tmp_path / "lake")) == len(READINGS)
