"""Exports with the input-mapping filters of the component contract, to CSV and Parquet."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakeport.errors import Invalid, NotFound
from lakeport.tables import TableStore

T = "in.c-main.readings"


@pytest.fixture
def store(tmp_path: Path) -> TableStore:
    store = TableStore(tmp_path / "lake")
    store.create(T, ["id", "site", "value"], primary_key=["id"])
    store.load(T, pa.table({"id": ["1", "2", "3", "4"], "site": ["n", "s", "s", "e"],
                            "value": ["10", "20", "30", "40"]}))
    return store


def read_csv(path: Path, delimiter: str = ",", quotechar: str = '"') -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter=delimiter, quotechar=quotechar))


def test_export_writes_a_header_and_no_hidden_columns(store: TableStore,
                                                      tmp_path: Path) -> None:
    result = store.export(T, tmp_path / "out.csv")
    lines = read_csv(tmp_path / "out.csv")
    assert lines[0] == ["id", "site", "value"]
    assert sorted(lines[1:]) == [["1", "n", "10"], ["2", "s", "20"], ["3", "s", "30"],
                                 ["4", "e", "40"]]
    assert (result.rows, result.columns) == (4, ["id", "site", "value"])


def test_columns_where_and_limit(store: TableStore, tmp_path: Path) -> None:
    store.export(T, tmp_path / "a.csv", columns=["value", "id"], where_column="site",
                 where_values=["s", "e"])
    assert sorted(read_csv(tmp_path / "a.csv")[1:]) == [["20", "2"], ["30", "3"], ["40", "4"]]
    assert read_csv(tmp_path / "a.csv")[0] == ["value", "id"]
    store.export(T, tmp_path / "b.csv", where_column="site", where_values=["s"],
                 where_operator="ne")
    assert sorted(r[0] for r in read_csv(tmp_path / "b.csv")[1:]) == ["1", "4"]
    result = store.export(T, tmp_path / "c.csv", limit=3)
    assert result.rows == 3 and len(read_csv(tmp_path / "c.csv")) == 4
    assert store.export(T, tmp_path / "d.csv", limit=0).rows == 0
    assert read_csv(tmp_path / "d.csv") == [["id", "site", "value"]]


def test_changed_since_and_days_select_rows_by_their_last_load(store: TableStore,
                                                               tmp_path: Path) -> None:
    boundary = datetime.now(UTC)
    store.load(T, pa.table({"id": ["2", "5"], "site": ["s", "w"], "value": ["21", "50"]}),
               incremental=True)
    recent = store.read(T, changed_since=boundary.isoformat())
    assert sorted(recent["id"].to_pylist()) == ["2", "5"]
    assert store.read(T, changed_since=boundary).num_rows == 2
    assert store.read(T, changed_since="1 day ago").num_rows == 5
    assert store.read(T, days=1).num_rows == 5
    assert store.read(T, days=0).num_rows == 0
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert store.export(T, tmp_path / "none.csv", changed_since=future).rows == 0
    result = store.export(T, tmp_path / "recent.csv", changed_since=boundary,
                          columns=["id"])
    assert sorted(read_csv(tmp_path / "recent.csv")[1:]) == [["2"], ["5"]]
    assert result.rows == 2


def test_parquet_export_keeps_types(tmp_path: Path) -> None:
    store = TableStore(tmp_path / "lake")
    when = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    store.load(T, pa.table({"id": pa.array([1, 2], pa.int64()), "at": pa.array(
        [when, when], pa.timestamp("us", tz="UTC")), "x": [0.5, 1.5]}))
    store.export(T, tmp_path / "out.parquet", format="parquet", where_column="id",
                 where_values=["2"])
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["id", "at", "x"]
    assert table.to_pylist() == [{"id": 2, "at": when, "x": 1.5}]
    store.export(T, tmp_path / "out.csv")
    lines = read_csv(tmp_path / "out.csv")
    assert lines[1] == ["1", "2026-01-31 12:00:00.000000Z", "0.5"]
    # the text of a time loads back as the same time
    store.load(T, tmp_path / "out.csv")
    assert store.read(T, where_column="id", where_values=["1"])["at"].to_pylist() == [when]


def test_bad_export_requests_are_one_line(store: TableStore, tmp_path: Path) -> None:
    cases = [
        ({"where_column": "site"}, "where_column 'site' without where_values"),
        ({"days": 2, "changed_since": "2026-01-01"}, "days and changed_since both given"),
        ({"columns": ["nope"]}, "column nope is not in table"),
        ({"where_column": "nope", "where_values": ["a"]}, "where_column 'nope' is not in"),
        ({"format": "xlsx"}, "export format must be csv or parquet"),
    ]
    for kwargs, message in cases:
        with pytest.raises(Invalid) as caught:
            store.export(T, tmp_path / "x.csv", **kwargs)  # type: ignore[arg-type]
        assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(NotFound, match=r"table in\.c-main\.missing does not exist"):
        store.export("in.c-main.missing", tmp_path / "x.csv")
