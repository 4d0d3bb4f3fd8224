"""Rows written as Parquet, CSV and JSON Lines read back the same with pyarrow and DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from lakeport.errors import Invalid
from lakeport.export.formats import FORMATS, check_format, write_table
from lakeport.readings import ROW_SCHEMA

WHEN = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def rows() -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"time": WHEN, "asset": "pump-1", "datastream": "t", "value_number": 1.5,
             "unit": "C", "seqno": 1, "producer": "sim"},
            {"time": WHEN, "asset": "pump-1", "datastream": "mode", "value_string": "auto",
             "seqno": 2, "producer": "sim"},
            {"time": WHEN, "asset": "pump-2", "datastream": "on", "value_bool": False,
             "seqno": 3, "producer": "sim"},
            {"time": WHEN, "asset": "pump-2", "datastream": "cfg", "value_object": '{"a":1}',
             "seqno": 4, "producer": "sim"},
        ],
        schema=ROW_SCHEMA,
    )


def test_parquet_round_trip_keeps_types(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    size = write_table(rows(), path, "parquet")
    assert size == path.stat().st_size > 0
    back = pq.read_table(path)
    assert back.schema.equals(ROW_SCHEMA) and back.equals(rows())
    metadata = pq.ParquetFile(path).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    result = duckdb.sql(f"SELECT count(*), sum(value_number), max(time) "
                        f"FROM read_parquet('{path}')").fetchall()[0]
    assert result[0] == 4 and result[1] == 1.5
    assert result[2] == WHEN


def test_parquet_keeps_large_row_groups(tmp_path: Path) -> None:
    table = pa.concat_tables([rows()] * 50_000)
    path = tmp_path / "big.parquet"
    write_table(table, path, "parquet")
    assert pq.ParquetFile(path).metadata.num_row_groups == 1


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    write_table(rows(), path, "csv")
    back = pa_csv.read_csv(path)
    assert back["seqno"].to_pylist() == [1, 2, 3, 4]
    assert back["value_string"].to_pylist()[1] == "auto"
    assert back["time"][0].as_py() == WHEN
    assert duckdb.sql(f"SELECT count(*) FROM read_csv('{path}')").fetchall()[0][0] == 4


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    write_table(rows(), path, "jsonl")
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["seqno"] for line in lines] == [1, 2, 3, 4]
    assert lines[0]["time"] == "2026-05-06T07:08:09.123456Z"
    assert lines[2]["value_bool"] is False and "value_number" not in lines[2]
    count = duckdb.sql(f"SELECT count(*) FROM read_json('{path}')").fetchall()[0][0]
    assert count == 4


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="unknown export format 'xml': use one of parquet, csv, json"):
        write_table(rows(), tmp_path / "x", "xml")
    assert not (tmp_path / "x").exists()


def test_one_table_names_each_format_extension_and_content_type() -> None:
    assert {name: (f.extension, f.content_type) for name, f in FORMATS.items()} == {
        "parquet": ("parquet", "application/vnd.apache.parquet"),
        "csv": ("csv", "text/csv"),
        "jsonl": ("jsonl", "application/jsonl"),
    }
    assert all(check_format(name) is FORMATS[name] for name in FORMATS)
