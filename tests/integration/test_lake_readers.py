"""What each reader makes of the lake's ``date=YYYY-MM-DD`` folders: the ``date`` column's type
by default and with the documented way to ask for a date (README, "Reading the lake")."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import sqlglot
from _batches import make_batch
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from lakeport.export.sinks import Batch
from lakeport.export.sinks.local import LocalSink
from lakeport.readings import ROW_SCHEMA

pytestmark = pytest.mark.timeout(60)
TOPIC = "asset-data"
DAYS = [date(2026, 5, 1), date(2026, 5, 2)]  # make_batch(1, 6): seqnos 1-3, then 4-6
DATE_PARTITIONING = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake written by the local sink: ``<lake>/asset-data/date=2026-05-0{1,2}/*.parquet``."""
    root = tmp_path_factory.mktemp("lake")

    async def write() -> list[str]:
        async with LocalSink(root.as_uri()) as sink:
            return await sink.write(make_batch(1, 6, TOPIC))

    assert len(asyncio.run(write())) == 2
    return root


def _duckdb(options: str) -> Callable[[Path], pa.Table]:
    def read(lake: Path) -> pa.Table:
        return duckdb.sql(f"SELECT time, date FROM read_parquet('{lake}/**/*.parquet'{options})"
                          " ORDER BY seqno").to_arrow_table()
    return read


def _polars(**options: Any) -> Callable[[Path], pa.Table]:
    def read(lake: Path) -> pa.Table:
        return pl.scan_parquet(f"{lake}/{TOPIC}/**/*.parquet", **options) \
            .sort("seqno").select("time", "date").collect().to_arrow()
    return read


def _pyarrow(**options: Any) -> Callable[[Path], pa.Table]:
    def read(lake: Path) -> pa.Table:
        return pq.read_table(lake / TOPIC, columns=["time", "seqno", "date"], **options) \
            .sort_by("seqno")
    return read


def _pandas(**options: Any) -> Callable[[Path], pa.Table]:
    def read(lake: Path) -> pa.Table:
        frame = pd.read_parquet(lake / TOPIC, columns=["time", "seqno", "date"], **options)
        return pa.Table.from_pandas(frame.sort_values("seqno"), preserve_index=False)
    return read


# reader -> (what the user writes, the date column's Arrow type)
AS_DATE: dict[str, tuple[Callable[[Path], pa.Table], pa.DataType]] = {
    "duckdb": (_duckdb(""), pa.date32()),
    "duckdb hive_types": (_duckdb(", hive_partitioning=true, hive_types={'date': DATE}"),
                          pa.date32()),
    "polars hive_schema": (_polars(hive_partitioning=True, hive_schema={"date": pl.Date}),
                           pa.date32()),
    "pyarrow partitioning": (_pyarrow(partitioning=DATE_PARTITIONING), pa.date32()),
    "pandas partitioning": (_pandas(partitioning=DATE_PARTITIONING), pa.date32()),
}
AS_TEXT: dict[str, tuple[Callable[[Path], pa.Table], pa.DataType]] = {
    "duckdb hive_types_autocast=false": (_duckdb(", hive_types_autocast=false"), pa.string()),
    "pyarrow hive": (lambda lake: ds.dataset(lake / TOPIC, format="parquet",
                                             partitioning="hive").to_table(), pa.string()),
    "pyarrow read_table": (_pyarrow(), pa.dictionary(pa.int32(), pa.string())),
}


@pytest.mark.parametrize("reader", sorted(AS_DATE))
def test_readers_asked_for_a_date_get_the_utc_day_of_each_row(lake: Path, reader: str) -> None:
    read, expected = AS_DATE[reader]
    table = read(lake)
    assert table.schema.field("date").type == expected
    assert table["date"].to_pylist() == [DAYS[0]] * 3 + [DAYS[1]] * 3
    assert table["date"].equals(pc.cast(table["time"], pa.date32())), "the day of time in UTC"


@pytest.mark.parametrize("reader", sorted(AS_TEXT))
def test_readers_by_default_get_the_folder_text(lake: Path, reader: str) -> None:
    read, expected = AS_TEXT[reader]
    column = read(lake)["date"]
    assert column.type == expected
    assert sorted(set(column.cast(pa.string()).to_pylist())) == [str(day) for day in DAYS]


def test_polars_reads_the_date_folders_only_when_asked(lake: Path) -> None:
    """A glob is not hive-partitioned by default in polars; a folder is (as a date)."""
    assert "date" not in pl.scan_parquet(f"{lake}/{TOPIC}/**/*.parquet").collect_schema()
    assert pl.scan_parquet(f"{lake}/{TOPIC}/**/*.parquet", hive_partitioning=True) \
        .collect_schema()["date"] == pl.Date
    assert pl.read_parquet(lake / TOPIC).schema["date"] == pl.Date


def test_pandas_gets_a_category_by_default_and_dates_when_asked(lake: Path) -> None:
    by_default = pd.read_parquet(lake / TOPIC)
    assert isinstance(by_default["date"].dtype, pd.CategoricalDtype)
    assert sorted(by_default["date"].astype(str).unique()) == [str(day) for day in DAYS]

    as_objects = pd.read_parquet(lake / TOPIC, partitioning=DATE_PARTITIONING)
    assert set(as_objects["date"]) == set(DAYS)
    assert all(type(day) is date for day in as_objects["date"])
    as_arrow = pd.read_parquet(lake / TOPIC, partitioning=DATE_PARTITIONING,
                               dtype_backend="pyarrow")
    assert as_arrow["date"].dtype == pd.ArrowDtype(pa.date32())


# -- Databricks: the documented table and COPY INTO (docs/sinks/databricks.md) -----------------
DATABRICKS_DOC = Path(__file__).resolve().parents[2] / "docs" / "sinks" / "databricks.md"
SPARK_TYPES = {pa.timestamp("us", tz="UTC"): "TIMESTAMP", pa.string(): "STRING",
               pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN", pa.int64(): "BIGINT",
               pa.date32(): "DATE"}
LAKE_TABLE = ROW_SCHEMA.append(pa.field("date", pa.date32(), nullable=False))


@functools.cache
def documented_sql(statement: str) -> exp.Expression:
    """The doc's one ```sql block starting with ``statement``, parsed (placeholders filled)."""
    blocks = re.findall(r"```sql\n(.*?)```", DATABRICKS_DOC.read_text(), re.S)
    found = [b for b in blocks if b.startswith(statement)]
    assert len(found) == 1, f"one {statement} block in {DATABRICKS_DOC.name}"
    return sqlglot.parse_one(re.sub(r"<(\w+)>", r"\1", found[0]), read="databricks")


def test_the_documented_databricks_table_has_the_row_columns_plus_date() -> None:
    create = documented_sql("CREATE TABLE")
    columns = [(c.name, c.args["kind"], any(isinstance(k.kind, exp.NotNullColumnConstraint)
                                           for k in c.constraints))
               for c in create.this.expressions]
    assert columns == [(f.name, exp.DataType.build(SPARK_TYPES[f.type], dialect="databricks"),
                        not f.nullable) for f in LAKE_TABLE]
    partitioned = create.find(exp.PartitionedByProperty)
    assert partitioned is not None and [c.name for c in partitioned.this.expressions] == ["date"]


def test_the_documented_copy_into_selects_the_table_columns() -> None:
    copy = documented_sql("COPY INTO")
    select = copy.find(exp.Select)
    assert select is not None and [e.alias_or_name for e in select.expressions] == \
        LAKE_TABLE.names
    assert select.find(exp.Table).name == "/Volumes/catalog/schema/volume/path"


def _documented_date_of(path: str) -> date:
    """Evaluate the COPY INTO's ``date`` expression (in DuckDB) for a file at ``path``."""
    select = documented_sql("COPY INTO").find(exp.Select)
    assert select is not None
    expression = next(e for e in select.expressions if e.alias_or_name == "date").this.copy()
    expression = expression.transform(
        lambda node: exp.Literal.string(path)
        if isinstance(node, exp.Column) and node.sql() == "_metadata.file_path" else node)
    [(day,)] = duckdb.sql(f"SELECT {expression.sql('duckdb')}").fetchall()
    return day


def _one_level(name: str) -> bool:
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\x00")


@settings(max_examples=60, deadline=None)
@given(topic=st.text(min_size=1, max_size=20).filter(_one_level),
       asset=st.text(max_size=20),
       moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                           timezones=st.just(UTC)),
       by_asset=st.booleans())
def test_the_documented_copy_into_takes_each_files_day(topic: str, asset: str, moment: datetime,
                                                      by_asset: bool) -> None:
    row = {"time": moment, "asset": asset, "datastream": "t", "seqno": 7, "producer": "p"}
    batch = Batch(topic, 7, 7, pa.Table.from_pylist([row], schema=ROW_SCHEMA))
    [(partition, _)] = batch.partitions(by_asset)
    key = batch.object_key("landing", partition, "parquet")
    assert _documented_date_of(f"dbfs:/Volumes/c/s/v/{key}") == moment.date()
