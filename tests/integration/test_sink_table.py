"""The ``table://`` sink: an exporter landing a topic in a storage table (append or upsert by
primary key), one commit per batch, and a batch replayed after a crash stored once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from _batches import make_batch

from lakeport.errors import Invalid, NotFound, Terminal
from lakeport.export.config import ExportConfig
from lakeport.export.runtime import Exporter
from lakeport.export.sinks import open_sink
from lakeport.export.sinks.table import TableSink
from lakeport.home import home_folder
from lakeport.streams import Engine, open_engine
from lakeport.tables import TableStore

pytestmark = pytest.mark.timeout(60)
TOPIC = "edge-data"
TABLE = "in.c-edge.readings"


def reading(i: int, assets: int = 4) -> dict[str, Any]:
    return {"asset": f"pump-{i % assets}", "datastream": "temperature", "value": float(i),
            "time": f"2026-04-05T06:07:{i % 60:02d}Z", "type": "number"}


async def produce(engine: Engine, readings: list[dict[str, Any]], topic: str = TOPIC) -> None:
    async with engine.producer("sim", topic) as producer:
        await producer.produce_many(readings)


def lakeport(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lakeport.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def stored(root: Path, table: str = TABLE) -> pa.Table:
    return TableStore(root).read(table).sort_by("seqno")


def test_the_cli_exports_a_topic_into_a_table_of_the_default_lake(tmp_path: Path) -> None:
    streams = (tmp_path / "streams").as_uri()

    async def fill() -> None:
        async with open_engine(streams) as engine:
            await produce(engine, [reading(i) for i in range(50)])

    asyncio.run(fill())
    env = {**os.environ, "LAKEPORT_HOME": str(tmp_path / "home")}
    env.pop("LAKEPORT_TABLES", None)
    done = lakeport("export", "run", "--topic", TOPIC, "--to", f"table://{TABLE}",
                    "--name", "edge", "--batch-rows", "20", "--until-idle", "0.5s",
                    "--url", streams, env=env)
    assert done.returncode == 0, done.stderr
    shown = lakeport("tables", "show", TABLE, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert '"rows": 50' in shown.stdout.replace("\n", "").replace("  ", " ")
    rows = stored(tmp_path / "home" / "tables")
    assert rows["seqno"].to_pylist() == list(range(1, 51))
    assert rows["value_number"].to_pylist() == [float(i) for i in range(50)]
    assert set(rows["topic"].to_pylist()) == {TOPIC}
    table = TableStore(tmp_path / "home" / "tables").open(TABLE)
    assert table.version() == 2  # three batches of at most 20 rows: three commits


async def test_a_primary_key_upserts_each_batch(tmp_path: Path) -> None:
    async with open_engine(f"memory://{uuid.uuid4().hex}") as engine:
        await produce(engine, [reading(i, assets=3) for i in range(10)])
        config = ExportConfig(
            topics=[TOPIC], to=f"table://{TABLE}?root={tmp_path}&primary_key=asset,datastream",
            name="edge", batch_rows=4, until_idle=0.3, retry_initial=0.01)
        status = await Exporter(config, engine=engine).run()
    assert (status.rows, status.batches) == (10, 3)
    rows = TableStore(tmp_path).read(TABLE).sort_by("asset")
    assert rows["asset"].to_pylist() == ["pump-0", "pump-1", "pump-2"]
    assert rows["value_number"].to_pylist() == [9.0, 7.0, 8.0]  # the last value of each
    info = TableStore(tmp_path).info(TABLE)
    assert info.primary_key == ["asset", "datastream"] and info.version == 2


async def test_a_batch_replayed_after_a_crash_is_stored_once(tmp_path: Path) -> None:
    url = f"table://{TABLE}?root={tmp_path}"
    async with open_sink(url) as sink:
        assert isinstance(sink, TableSink)
        first = await sink.write(make_batch(1, 4))
        assert first
        version = TableStore(tmp_path).open(TABLE).version()
        assert await sink.write(make_batch(1, 4)) == []  # the retry before the ack
    async with open_sink(url) as sink:  # after a restart the batch is cut otherwise
        assert await sink.write(make_batch(1, 8))
        assert await sink.write(make_batch(5, 8)) == []
    assert stored(tmp_path)["seqno"].to_pylist() == list(range(1, 9))
    assert TableStore(tmp_path).open(TABLE).version() == version + 1


async def test_an_exporter_restarted_after_an_unacked_commit_stores_each_reading_once(
        tmp_path: Path) -> None:
    """The first batch committed, then the exporter died before the ack: the restarted
    exporter reads the topic from the start again."""
    async with open_engine(f"memory://{uuid.uuid4().hex}") as engine:
        await produce(engine, [reading(i) for i in range(12)])
        url = f"table://{TABLE}?root={tmp_path}"
        async with open_sink(url) as sink:  # what the crashed exporter committed
            await sink.write(make_batch(1, 5, topic=TOPIC))
        config = ExportConfig(topics=[TOPIC], to=url, name="edge", batch_rows=4,
                              until_idle=0.3, retry_initial=0.01)
        await Exporter(config, engine=engine).run()
    rows = stored(tmp_path)
    assert rows["seqno"].to_pylist() == list(range(1, 13))
    assert rows["value_number"].to_pylist()[:5] == [1.0, 2.0, 3.0, 4.0, 5.0]  # kept as is
    assert rows["value_number"].to_pylist()[5:] == [float(i) for i in range(5, 12)]


async def test_topics_keep_their_own_seqnos(tmp_path: Path) -> None:
    async with open_sink(f"table://{TABLE}?root={tmp_path}") as sink:
        await sink.write(make_batch(1, 4, topic="a"))
        await sink.write(make_batch(1, 4, topic="b"))
        await sink.write(make_batch(1, 4, topic="a"))
    rows = stored(tmp_path)
    assert sorted(zip(rows["topic"].to_pylist(), rows["seqno"].to_pylist(), strict=True)) \
        == [(t, s) for t in "ab" for s in range(1, 5)]


async def test_the_lake_comes_from_the_environment_and_the_url_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEPORT_TABLES", str(tmp_path / "from-env"))
    async with open_sink(f"table://{TABLE}") as sink:
        await sink.write(make_batch(1, 2))
    assert stored(tmp_path / "from-env").num_rows == 2
    monkeypatch.delenv("LAKEPORT_TABLES")
    async with open_sink(f"table://{TABLE}") as sink:
        await sink.write(make_batch(1, 3))
    assert stored(home_folder() / "tables").num_rows == 3


async def test_what_cannot_work_says_why(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match=r"bad table id 'readings': expected"):
        open_sink("table://readings")
    with pytest.raises(Invalid, match=r"given both in the URL and as an option"):
        open_sink(f"table://{TABLE}?root={tmp_path}", {"root": str(tmp_path)})
    async with open_sink(f"table://{TABLE}?root={tmp_path}/nope") as sink:
        with pytest.raises(NotFound, match=r"lake folder .*nope' does not exist"):
            await sink.healthcheck()
    async with open_sink(f"table://{TABLE}?root={tmp_path}") as sink:
        await sink.write(make_batch(1, 2))
    async with open_sink(f"table://{TABLE}?root={tmp_path}&primary_key=seqno") as sink:
        with pytest.raises(Terminal, match=r"the table's primary key is none, not seqno"):
            await sink.healthcheck()
    async with open_sink(f"table://{TABLE}?root={tmp_path}&primary_key=nope") as sink:
        with pytest.raises(Invalid, match=r"nope is not a column"):
            await sink.write(make_batch(3, 4))
    async with open_sink(f"table://{TABLE}?root={tmp_path}") as sink:
        with pytest.raises(Invalid, match=r"stores Parquet only, not 'csv'"):
            await sink.write(make_batch(3, 4), "csv")
    assert stored(tmp_path).num_rows == 2
