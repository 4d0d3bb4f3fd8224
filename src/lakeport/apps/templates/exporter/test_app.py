"""Tests of the exporter's own logic: run them with ``python -m pytest test_app.py``."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from lakeport.apps import Boolean, Number, Object, String, parse_message

from main import ParquetExporter


def message(seqno: int, kind: type, datastream: str, value: object) -> object:
    """A data message as the app reads it: with the seqno of its topic message."""
    payload = kind(asset="asset-01", datastream=datastream, value=value).to_payload()
    return parse_message(payload, seqno)


def test_full_batches_become_files_named_by_seqno_range(tmp_path: Path) -> None:
    exporter = ParquetExporter(tmp_path, batch_rows=3, max_delay=60)
    written = [exporter.add(message(n, Number, "temperature", n / 2)) for n in range(11, 18)]
    assert [p.name for p in written if p is not None] == ["11-13.parquet", "14-16.parquet"]
    assert exporter.flush().name == "17-17.parquet"
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["11-13.parquet", "14-16.parquet", "17-17.parquet"]  # no partial files left
    table = pq.read_table(tmp_path / "11-13.parquet")
    assert table.column("seqno").to_pylist() == [11, 12, 13]
    assert table.column("number").to_pylist() == [5.5, 6.0, 6.5]
    assert exporter.received == exporter.rows_written == 7


def test_every_data_type_has_its_column(tmp_path: Path) -> None:
    exporter = ParquetExporter(tmp_path, batch_rows=100)
    exporter.add(message(1, Number, "temperature", 21.5))
    exporter.add(message(2, String, "status", "running"))
    exporter.add(message(3, Boolean, "running", True))
    exporter.add(message(4, Object, "payload", {"a": 1}))
    rows = pq.read_table(exporter.flush()).to_pylist()
    assert [row["type"] for row in rows] == ["number", "string", "boolean", "object"]
    assert [rows[0]["number"], rows[1]["string"], rows[2]["boolean"], rows[3]["object"]] == \
        [21.5, "running", True, '{"a": 1}']
    assert rows[0]["string"] is None and rows[1]["number"] is None


def test_a_batch_is_due_after_max_delay(tmp_path: Path) -> None:
    now = [100.0]
    exporter = ParquetExporter(tmp_path, batch_rows=100, max_delay=5, clock=lambda: now[0])
    assert not exporter.due()
    exporter.add(message(1, Number, "temperature", 1.0))
    now[0] += 4.9
    assert not exporter.due()
    now[0] += 0.2
    assert exporter.due()
    assert exporter.flush().name == "1-1.parquet"
    assert not exporter.due() and exporter.flush() is None
