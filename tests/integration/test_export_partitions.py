"""``--partition-by-asset`` with asset names that are not plain folder names: each lands in
exactly one ``asset=<escaped>`` folder inside the lake, and DuckDB, polars and pyarrow read the
exact names back from the folder names."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from _batches import make_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from lakeport.errors import Terminal
from lakeport.export.config import ExportConfig
from lakeport.export.runtime import Exporter
from lakeport.export.sinks import Batch
from lakeport.export.sinks.base import HIVE_NULL, MAX_VALUE_BYTES, partition_value
from lakeport.export.sinks.local import LocalSink
from lakeport.streams import open_engine

pytestmark = pytest.mark.timeout(60)
TOPIC = "transformed-data"
ASSETS = ["x/../../../../escaped", "line 1/pump=7", "a%2Fb", "ä ö", "..", ".", "tab\there",
          "q?r#s", "tail.", "c:d\\e*f\"g'h[i]j{k}l^m", "nl\nx\x7fy", "plain-pump"]
ALL = [*ASSETS, HIVE_NULL]


def reading(asset: str, i: int) -> dict[str, Any]:
    return {"asset": asset, "datastream": "temperature", "value": float(i),
            "time": "2026-04-05T06:07:08Z", "type": "number"}


async def export(lake: Path, assets: list[str]) -> None:
    async with open_engine(f"memory://{uuid.uuid4().hex}") as engine:
        async with engine.producer("sim", TOPIC) as producer:
            await producer.produce_many([reading(a, i) for i in range(2) for a in assets])
        config = ExportConfig(topics=[TOPIC], to=lake.as_uri(), name="lake", until_idle=0.3,
                              retry_initial=0.01, partition_by_asset=True)
        status = await Exporter(config, engine=engine).run()
    assert status.last_error is None


def counts(rows: list[tuple[Any, int]]) -> dict[Any, int]:
    return dict(rows)


async def test_unusual_asset_names_stay_in_one_folder_each_and_read_back_exactly(
        tmp_path: Path) -> None:
    lake = tmp_path / "a" / "b" / "lake"
    await export(lake, ALL)

    outside = [p for p in tmp_path.rglob("*") if p.is_file() and lake not in p.parents]
    assert outside == [], "nothing is written outside the lake folder"
    written = sorted(lake.rglob("*.parquet"))
    levels = {p.relative_to(lake).parts[:-1] for p in written}
    assert all(len(level) == 3 and level[:2] == (TOPIC, "date=2026-04-05") and
               level[2].startswith("asset=") for level in levels), levels
    assert len(levels) == len(ALL), "one folder per asset"
    assert sorted(unquote(level[2].removeprefix("asset=")) for level in levels) == sorted(ALL)

    expected = dict.fromkeys(ALL, 2)
    assert counts(duckdb.sql(
        f"SELECT asset, count(*) FROM read_parquet('{lake}/**/*.parquet', hive_partitioning=true)"
        " GROUP BY asset").fetchall()) == expected

    # polars and pyarrow read a folder value spelled like Hive's null marker as null
    expected_null = {**dict.fromkeys(ASSETS, 2), None: 2}
    got = pl.scan_parquet(f"{lake}/**/*.parquet", hive_partitioning=True) \
        .group_by("asset").len().collect().rows()
    assert counts(got) == expected_null

    table = ds.dataset(lake / TOPIC, format="parquet", partitioning=ds.HivePartitioning.discover(
        segment_encoding="uri")).to_table(columns=["asset"])
    got_arrow: dict[Any, int] = {}
    for asset in table["asset"].to_pylist():
        got_arrow[asset] = got_arrow.get(asset, 0) + 1
    assert got_arrow == expected_null


def test_every_character_round_trips_in_one_folder_level() -> None:
    chars = [chr(c) for c in range(1, 0x250)] + ["\u2028", "\u200b", "\ufeff", "😀", "\x00"]
    for char in chars:
        for value in (char, f"a{char}b", f"{char}{char}"):
            escaped = partition_value(value)
            assert unquote(escaped) == value, value
            assert "/" not in escaped and "\\" not in escaped and escaped.isprintable(), value
            assert not escaped.endswith("."), value
    assert partition_value("") == ""
    assert partition_value(".") == "%2E" and partition_value("..") == "%2E%2E"
    assert partition_value("line 1/pump=7") == "line 1%2Fpump%3D7"
    assert partition_value("a%2Fb") == "a%252Fb"
    assert partition_value(HIVE_NULL) == "%5F" + HIVE_NULL[1:]


def test_an_empty_asset_is_an_empty_folder_value() -> None:
    batch = make_batch(1, 2)
    table = batch.table.set_column(1, "asset", pa.array(["", ""]))
    [(partition, rows)] = Batch(batch.topic, 1, 2, table).partitions(by_asset=True)
    assert partition == "date=2026-05-01/asset=" and rows.num_rows == 2


async def test_a_key_that_would_leave_the_topic_folder_is_refused(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    batch = make_batch(4, 6)
    for topic, partition in [("..", "date=2026-05-02"), (".", "date=2026-05-02"),
                             ("t", "date=2026-05-02/.."), ("t", "date=2026-05-02/asset=x/y"),
                             ("t", "../date=2026-05-02"), ("t", "date=2026-05-02//asset=x")]:
        with pytest.raises(Terminal, match="would not land in the topic's own folder"):
            Batch(topic, 4, 6, batch.table).object_key("prefix", partition, "parquet")
    with pytest.raises(Terminal):
        await LocalSink(lake.as_uri()).write(Batch("..", 4, 6, batch.table))
    assert not any(tmp_path.rglob("*.parquet"))


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=400))
def test_a_partition_value_always_fits_a_folder_name(value: str) -> None:
    escaped = partition_value(value)
    assert len(f"asset={escaped}".encode()) <= 255
    assert "/" not in escaped and escaped.isprintable() and not escaped.endswith(".")
    if len(escaped.encode()) < MAX_VALUE_BYTES:
        assert unquote(escaped) == value


def test_long_names_stay_apart_and_keep_their_exact_name_inside(tmp_path: Path) -> None:
    """A 300-character asset name wrote nothing before (the folder name was too long for
    the file system, an error retried for ever); two such names sharing their first 250
    characters land in two folders."""
    lake = tmp_path / "lake"
    long_a, long_b = "pump/" * 50 + "a" * 50, "pump/" * 50 + "b" * 50
    asyncio.run(export(lake, [long_a, long_b]))
    folders = {p.parent.name for p in lake.rglob("*.parquet")}
    assert len(folders) == 2 and all(len(f.encode()) <= 255 for f in folders)
    names = pa.concat_tables(
        [pq.read_table(p, columns=["asset"]) for p in lake.rglob("*.parquet")]
    )["asset"].to_pylist()
    assert sorted(set(names)) == [long_a, long_b]
