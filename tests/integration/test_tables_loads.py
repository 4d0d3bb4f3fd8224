"""Loads into storage tables on a real Delta lake: every load kind is one commit, delete_where
lands in the same commit as the new rows, and a failed load changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lakeport.errors import Conflict, Invalid, NotFound, Transient
from lakeport.tables import CHANGED, TableStore

T = "in.c-main.readings"


@pytest.fixture
def store(tmp_path: Path) -> TableStore:
    return TableStore(tmp_path / "lake")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def rows(store: TableStore, table_id: str = T, **filters: object) -> list[tuple[str, ...]]:
    table = store.read(table_id, **filters)  # type: ignore[arg-type]
    return sorted(tuple(str(v) for v in row.values()) for row in table.to_pylist())


def commits(store: TableStore, table_id: str = T) -> list[Path]:
    return sorted((Path(store.uri(table_id)) / "_delta_log").glob("*.json"))


def test_a_table_describes_itself_in_its_delta_metadata(store: TableStore) -> None:
    info = store.create(T, ["id", "asset", "value"], primary_key=["id"],
                        description="press readings",
                        column_metadata={"value": {"unit": "bar"}})
    assert (info.id, info.stage, info.bucket, info.name) == (T, "in", "c-main", "readings")
    assert info.columns == ["id", "asset", "value"] and info.primary_key == ["id"]
    assert info.rows == 0 and info.last_change is None and info.version == 0
    # a fresh store (another process) reads everything back from the table itself
    again = TableStore(store.root).info(T)
    assert again.description == "press readings"
    assert again.column_metadata == {"value": {"unit": "bar"}}
    assert again.primary_key == ["id"] and again.created == info.created
    # any Delta reader sees the table, its description and no lakeport database
    delta = DeltaTable(store.uri(T))
    assert delta.metadata().description == "press readings"
    assert [p.name for p in Path(store.root).iterdir()] == ["in"]
    with pytest.raises(Conflict, match="already exists"):
        store.create(T, ["id"])


def test_create_list_and_delete(store: TableStore) -> None:
    store.create(T, ["id"])
    store.create("out.c-main.results", ["id"])
    store.create("in.c-other.x", ["id"])
    assert [i.id for i in store.list()] == ["in.c-main.readings", "in.c-other.x",
                                            "out.c-main.results"]
    assert [i.id for i in store.list(stage="in", bucket="c-main")] == [T]
    assert store.exists(T)
    store.delete(T)
    assert not store.exists(T)
    with pytest.raises(NotFound, match=f"table {T} does not exist"):
        store.info(T)
    with pytest.raises(NotFound, match=f"table {T} does not exist"):
        store.delete(T)


def test_full_load_replaces_all_rows(store: TableStore, tmp_path: Path) -> None:
    first = store.load(T, write(tmp_path / "a.csv", "id,v\n1,a\n2,b\n"))
    assert first.rows_loaded == 2 and first.version == 0 and not first.incremental
    second = store.load(T, write(tmp_path / "b.csv", "id,v\n3,c\n"))
    assert rows(store) == [("3", "c")]
    assert (second.rows_loaded, second.rows_deleted, second.version) == (1, 2, 1)
    assert len(commits(store)) == 2


def test_incremental_without_key_appends(store: TableStore, tmp_path: Path) -> None:
    store.load(T, write(tmp_path / "a.csv", "id,v\n1,a\n"))
    result = store.load(T, write(tmp_path / "b.csv", "id,v\n1,a\n2,b\n"), incremental=True)
    assert rows(store) == [("1", "a"), ("1", "a"), ("2", "b")]
    assert (result.rows_loaded, result.version) == (2, 1)


def test_incremental_with_key_upserts(store: TableStore, tmp_path: Path) -> None:
    store.create(T, ["id", "v"], primary_key=["id"])
    store.load(T, write(tmp_path / "a.csv", "id,v\n1,a\n2,b\n"))
    result = store.load(T, write(tmp_path / "b.csv", "id,v\n2,B\n3,c\n3,C\n"),
                        incremental=True)
    # a key twice in one load: the last row wins
    assert rows(store) == [("1", "a"), ("2", "B"), ("3", "C")]
    assert result.rows_loaded == 2 and result.version == 2


def test_upsert_by_a_key_given_with_the_load(store: TableStore) -> None:
    store.load(T, pa.table({"id": [1, 2], "v": ["a", "b"]}), primary_key=["id"])
    assert store.info(T).primary_key == ["id"]
    store.load(T, pa.table({"id": [2], "v": ["B"]}), incremental=True)
    assert rows(store) == [("1", "a"), ("2", "B")]
    assert store.read(T).schema.field("id").type == pa.int64()


def test_change_times_follow_inserts_and_updates(store: TableStore) -> None:
    store.load(T, pa.table({"id": ["1", "2"], "v": ["a", "b"]}), primary_key=["id"])
    times = DeltaTable(store.uri(T)).to_pyarrow_table().to_pydict()
    first = dict(zip(times["id"], times[CHANGED], strict=True))
    store.load(T, pa.table({"id": ["2", "3"], "v": ["B", "c"]}), incremental=True)
    times = DeltaTable(store.uri(T)).to_pyarrow_table().to_pydict()
    after = dict(zip(times["id"], times[CHANGED], strict=True))
    assert after["1"] == first["1"]
    assert after["2"] > first["2"] and after["3"] == after["2"]
    assert after["2"].tzinfo is not None


@pytest.mark.parametrize(("operator", "kept"), [
    ("eq", [("1", "north", "a"), ("4", "north", "d"), ("5", "east", "e")]),
    ("ne", [("2", "south", "b"), ("3", "south", "c"), ("5", "east", "e")]),
])
def test_delete_where_lands_in_the_same_commit_as_the_load(
        store: TableStore, tmp_path: Path, operator: str, kept: list[tuple[str, ...]]) -> None:
    store.create(T, ["id", "site", "v"], primary_key=["id"])
    store.load(T, write(tmp_path / "a.csv",
                        "id,site,v\n1,north,a\n2,south,b\n3,south,c\n4,north,d\n"))
    before = commits(store)
    result = store.load(T, write(tmp_path / "b.csv", "id,site,v\n5,east,e\n"),
                        incremental=True, delete_where_column="site",
                        delete_where_values=["south"], delete_where_operator=operator)
    after = commits(store)
    assert len(after) == len(before) + 1, "one load, one commit"
    actions = [json.loads(line) for line in after[-1].read_text().splitlines()]
    kinds = {key for action in actions for key in action}
    assert {"add", "remove", "commitInfo"} <= kinds
    assert result.rows_deleted == 2 and result.rows_loaded == 1
    # a reader at the version before sees the old rows, at the new one both changes at once
    old = store.read(T, version=result.version - 1)
    assert sorted(old["id"].to_pylist()) == ["1", "2", "3", "4"]
    assert rows(store) == kept


def test_delete_where_on_a_typed_column(store: TableStore) -> None:
    store.load(T, pa.table({"id": [1, 2, 3], "day": pa.array([1, 2, 2], pa.int32())}))
    result = store.load(T, pa.table({"id": [4], "day": pa.array([3], pa.int32())}),
                        incremental=True, delete_where_column="day", delete_where_values=["2"])
    assert result.rows_deleted == 2
    assert rows(store) == [("1", "1"), ("4", "3")]
    failed(store, "delete_where_values do not fit column 'day' (int32)",
           pa.table({"id": [5], "day": pa.array([3], pa.int32())}), incremental=True,
           delete_where_column="day", delete_where_values=["x"])


def test_delete_where_with_a_full_table_append(store: TableStore) -> None:
    store.load(T, pa.table({"id": ["1", "2"], "day": ["mon", "tue"]}))
    store.load(T, pa.table({"id": ["3"], "day": ["tue"]}), incremental=True,
               delete_where_column="day", delete_where_values=["tue"])
    assert rows(store) == [("1", "mon"), ("3", "tue")]


def test_a_folder_of_slices_is_loaded_as_one_table(store: TableStore, tmp_path: Path) -> None:
    sliced = tmp_path / "readings.csv"
    sliced.mkdir()
    write(sliced / "part-1", "1,a\n2,b\n")
    write(sliced / "part-2", "3,c\n")
    result = store.load(T, sliced, columns=["id", "v"])
    assert result.rows_loaded == 3 and result.version == 0
    assert rows(store) == [("1", "a"), ("2", "b"), ("3", "c")]
    headed = tmp_path / "headed"
    headed.mkdir()
    write(headed / "a.csv", "v,id\nx,7\n")
    write(headed / "b.csv", "v,id\ny,8\n")
    store.load(T, headed, incremental=True)
    assert ("7", "x") in rows(store) and ("8", "y") in rows(store)


def test_a_headless_csv_with_another_delimiter_and_enclosure(store: TableStore,
                                                            tmp_path: Path) -> None:
    store.load(T, write(tmp_path / "a.csv", "1;'a;b'\n2;'it''s'\n"), columns=["id", "v"],
               delimiter=";", enclosure="'")
    assert rows(store) == [("1", "a;b"), ("2", "it's")]


# -- failed loads change nothing -------------------------------------------------------------
def failed(store: TableStore, message: str, *args: object, **kwargs: object) -> str:
    version = store.info(T).version
    with pytest.raises(Invalid) as caught:
        store.load(T, *args, **kwargs)  # type: ignore[arg-type]
    assert store.info(T).version == version, "a failed load moved the table's version"
    text = str(caught.value)
    assert message in text and "\n" not in text, text
    return text


def test_failed_loads_change_nothing(store: TableStore, tmp_path: Path) -> None:
    store.create(T, ["id", "v"], primary_key=["id"])
    store.load(T, write(tmp_path / "ok.csv", "id,v\n1,a\n"))
    failed(store, "does not match the columns of table in.c-main.readings (id,v): missing v; "
           "unexpected w", write(tmp_path / "h.csv", "id,w\n2,b\n"))
    failed(store, "unexpected x", write(tmp_path / "x.csv", "id,v,x\n2,b,c\n"))
    failed(store, "CSV file 'bad.csv'", write(tmp_path / "bad.csv", "id,v\n2,b\n3,c,x\n"))
    failed(store, "primary key a differs", write(tmp_path / "k.csv", "id,v\n2,b\n"),
           incremental=True, primary_key=["a"])
    failed(store, "delete_where_column 'v' without delete_where_values",
           write(tmp_path / "d.csv", "id,v\n2,b\n"), incremental=True,
           delete_where_column="v")
    failed(store, "delete_where_column 'nope' is not a column",
           write(tmp_path / "d.csv", "id,v\n2,b\n"), incremental=True,
           delete_where_column="nope", delete_where_values=["x"])
    failed(store, "is empty", write(tmp_path / "e.csv", ""))
    failed(store, "all slices need the same header", _slices(tmp_path))
    assert rows(store) == [("1", "a")]


def _slices(tmp_path: Path) -> Path:
    folder = tmp_path / "slices"
    folder.mkdir()
    write(folder / "1.csv", "id,v\n5,e\n")
    write(folder / "2.csv", "v,id\nf,6\n")
    return folder


def test_a_bad_row_late_in_a_big_csv_commits_nothing(store: TableStore,
                                                     tmp_path: Path) -> None:
    store.load(T, write(tmp_path / "ok.csv", "id,v\n1,a\n"))
    big = tmp_path / "big.csv"
    with big.open("w") as out:
        out.write("id,v\n")
        out.writelines(f"{i},value {i}\n" for i in range(300_000))
        out.write("300000,too,many\n")
    failed(store, "CSV file 'big.csv'", big)
    assert rows(store) == [("1", "a")]
    with pytest.raises(Invalid):
        store.load("in.c-main.new", big)
    assert not store.exists("in.c-main.new"), "a failed first load left a table behind"


def test_a_primary_key_column_missing_from_the_rows(store: TableStore, tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="primary key column key is missing from the columns id,v"):
        store.load(T, write(tmp_path / "a.csv", "id,v\n1,a\n"), primary_key=["key"])
    assert not store.exists(T)
    store.load(T, write(tmp_path / "a.csv", "id,v\n1,a\n"))
    failed(store, "primary key column key is missing", write(tmp_path / "b.csv", "id,v\n2,b\n"),
           incremental=True, primary_key=["key"])


def test_loading_into_a_missing_table_without_create(store: TableStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=f"table {T} does not exist"):
        store.load(T, write(tmp_path / "a.csv", "id\n1\n"), create=False)
    with pytest.raises(Invalid, match=r"bad table id 'in\.main\.x'"):
        store.load("in.main.x", write(tmp_path / "a.csv", "id\n1\n"))


@pytest.mark.parametrize("incremental", [False, True])
def test_a_load_racing_another_writer_is_a_conflict_not_a_lost_update(
        store: TableStore, incremental: bool) -> None:
    from lakeport.tables.ids import parse_table_id
    from lakeport.tables.loads import Load

    store.load(T, pa.table({"id": ["1", "2"], "v": ["a", "b"]}), primary_key=["id"])
    slow = Load(store, parse_table_id(T), pa.table({"id": ["2"], "v": ["slow"]}),
                incremental=incremental, primary_key=None, columns=None, delimiter=",",
                enclosure='"', delete_where_column=None, delete_where_values=None,
                delete_where_operator="eq", create=True)  # has read the table's version 0
    store.load(T, pa.table({"id": ["2", "3"], "v": ["fast", "c"]}), incremental=True)
    with pytest.raises(Transient, match="another writer committed first; retry"):
        slow.run()
    assert rows(store) == [("1", "a"), ("2", "fast"), ("3", "c")]
    assert store.info(T).version == 1


@pytest.mark.parametrize("incremental", [True, False])
def test_a_load_with_a_primary_key_keeps_one_row_per_key(tmp_path: Path,
                                                         incremental: bool) -> None:
    """The load that creates the table, or replaces its rows, keeps the last row of each
    key as an upsert does."""
    store = TableStore(tmp_path)
    rows = pa.table({"k": ["a", "a", "b"], "v": [1, 2, 3]})
    store.load("in.c-main.keys", rows, incremental=incremental, primary_key=["k"])
    assert sorted(store.read("in.c-main.keys").select(["k", "v"]).to_pylist(),
                  key=lambda r: r["k"]) == [{"k": "a", "v": 2}, {"k": "b", "v": 3}]
    store.load("in.c-main.keys", pa.table({"k": ["a"], "v": [9]}), incremental=True)
    assert sorted(store.read("in.c-main.keys").select(["k", "v"]).to_pylist(),
                  key=lambda r: r["k"]) == [{"k": "a", "v": 9}, {"k": "b", "v": 3}]
