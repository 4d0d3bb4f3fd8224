"""Output mapping end to end: the contract's examples for tables and files, destination
resolution, sliced tables, and bad output that loads nothing at all."""

from __future__ import annotations

import json
from pathlib import Path

from _components import outputs, platform


def test_basic_output_and_destination_resolution(tmp_path: Path) -> None:
    p = platform(tmp_path)
    manifest = json.dumps({"destination": "out.c-main.from_manifest"})
    job = p.run(outputs(
        {"source": "out.c-main.data.csv", "destination": "out.c-main.data"},
        write={"out/tables/out.c-main.data.csv": "id,name\n1,a\n2,b\n",
               "out/tables/out.c-main.by_name.csv": "id\n7\n",
               "out/tables/any.csv": "id\n8\n", "out/tables/any.csv.manifest": manifest}))
    assert job.succeeded, job.message
    assert p.rows("out.c-main.data") == [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}]
    assert p.rows("out.c-main.by_name") == [{"id": "7"}]
    assert p.rows("out.c-main.from_manifest") == [{"id": "8"}]
    assert sorted(t["destination"] for t in job.tables_out) == [
        "out.c-main.by_name", "out.c-main.data", "out.c-main.from_manifest"]


def test_mapping_wins_over_manifest(tmp_path: Path) -> None:
    p = platform(tmp_path)
    job = p.run(outputs(
        {"source": "data.csv", "destination": "out.c-main.mapped"},
        write={"out/tables/data.csv": "id\n1\n", "out/tables/data.csv.manifest":
               json.dumps({"destination": "out.c-main.manifest"})}))
    assert job.succeeded, job.message
    assert p.tables.exists("out.c-main.mapped")
    assert not p.tables.exists("out.c-main.manifest")


def test_headless_csv(tmp_path: Path) -> None:
    p = platform(tmp_path)
    job = p.run(outputs({"source": "data.csv", "destination": "out.c-main.data",
                         "columns": ["column1", "column2"]},
                        write={"out/tables/data.csv": "a,1\nb,2\n"}))
    assert job.succeeded, job.message
    assert p.rows("out.c-main.data", "column1") == [{"column1": "a", "column2": "1"},
                                                    {"column1": "b", "column2": "2"}]


def test_primary_key_incremental_upsert(tmp_path: Path) -> None:
    p = platform(tmp_path)
    p.load("out.c-main.data", "column1,column2,v\n1,x,old\n2,y,old\n",
           primary_key=["column1", "column2"])
    job = p.run(outputs({"source": "data.csv", "destination": "out.c-main.data",
                         "incremental": True, "primary_key": ["column1", "column2"]},
                        write={"out/tables/data.csv": "column1,column2,v\n2,y,new\n3,z,new\n"}))
    assert job.succeeded, job.message
    assert [(r["column1"], r["v"]) for r in p.rows("out.c-main.data", "column1")] == [
        ("1", "old"), ("2", "new"), ("3", "new")]
    assert p.tables.info("out.c-main.data").primary_key == ["column1", "column2"]


def test_delete_rows(tmp_path: Path) -> None:
    p = platform(tmp_path)
    p.load("out.c-main.Leads", "id,Status\n1,Closed\n2,Open\n3,Closed\n")
    job = p.run(outputs({"source": "data.csv", "destination": "out.c-main.Leads",
                         "incremental": True, "delete_where_column": "Status",
                         "delete_where_values": ["Closed"], "delete_where_operator": "eq"},
                        write={"out/tables/data.csv": "id,Status\n4,New\n"}))
    assert job.succeeded, job.message
    assert p.rows("out.c-main.Leads") == [{"id": "2", "Status": "Open"},
                                          {"id": "4", "Status": "New"}]
    assert job.tables_out[0]["deleted"] == 2


def test_sliced_table_with_a_library_style_manifest(tmp_path: Path) -> None:
    p = platform(tmp_path)
    manifest = json.dumps({"destination": "out.c-main.sliced", "columns": ["id", "v"],
                           "primary_key": ["id"], "incremental": False})
    job = p.run(outputs(write={"out/tables/sliced.csv/part-1": "1,a\n2,b\n",
                               "out/tables/sliced.csv/part-2": "3,c\n",
                               "out/tables/sliced.csv.manifest": manifest}))
    assert job.succeeded, job.message
    assert [r["id"] for r in p.rows("out.c-main.sliced")] == ["1", "2", "3"]
    assert p.tables.info("out.c-main.sliced").primary_key == ["id"]


def test_output_files(tmp_path: Path) -> None:
    p = platform(tmp_path)
    config = {"storage": {"output": {"files": [
        {"source": "file.csv", "tags": ["processed-file", "csv"]},
        {"source": "image.jpg", "is_public": True, "is_permanent": True,
         "tags": ["image", "pie-chart"]}]}},
        "parameters": {"write": {"out/files/file.csv": "a,b\n", "out/files/image.jpg": "jpg",
                                 "out/files/extra.txt": "x", "out/files/extra.txt.manifest":
                                 json.dumps({"tags": ["from-manifest"]})}}}
    job = p.run(config)
    assert job.succeeded, job.message
    stored = {f.name: f for f in p.files.files()}
    assert stored["file.csv"].tags == ["processed-file", "csv"]
    assert stored["image.jpg"].is_public and stored["image.jpg"].is_permanent
    assert stored["extra.txt"].tags == ["from-manifest"]
    assert {f.run_id for f in stored.values()} == {job.run_id}
    missing = p.run({"storage": {"output": {"files": [{"source": "nope.csv"}]}},
                     "parameters": {}})
    assert missing.state == "error"
    assert missing.message == "storage.output.files[0]: source 'nope.csv' is missing in out/files"


def _nothing_loaded(p, job, message: str) -> None:
    assert job.state == "error" and job.exit_code == 0
    assert job.message == message
    assert not p.tables.exists("out.c-main.good")
    assert p.states.read("cfg").state == {}


GOOD = {"out/tables/out.c-main.good.csv": "id\n1\n", "out/state.json": '{"s": 1}'}


def test_a_missing_source_loads_nothing(tmp_path: Path) -> None:
    p = platform(tmp_path)
    job = p.run(outputs({"source": "data.csv", "destination": "out.c-main.data"}, write=GOOD))
    _nothing_loaded(p, job, "storage.output.tables[0]: source 'data.csv' is missing in "
                    "out/tables")


def test_a_header_not_matching_the_manifest_loads_nothing(tmp_path: Path) -> None:
    p = platform(tmp_path)
    manifest = {"destination": "out.c-main.bad", "manifest_type": "out", "has_header": True,
                "schema": [{"name": "id"}, {"name": "value"}, {"name": "unit"}]}
    job = p.run(outputs(write={**GOOD, "out/tables/zz.csv": "id,value\n1,2\n",
                               "out/tables/zz.csv.manifest": json.dumps(manifest)}))
    _nothing_loaded(p, job, "out/tables/zz.csv: header ['id', 'value'] does not match the "
                    "manifest's columns ['id', 'value', 'unit']")
    headless = p.run(outputs(write={**GOOD, "out/tables/zz.csv": "1,2\n",
                                    "out/tables/zz.csv.manifest": json.dumps(
                                        {"destination": "out.c-main.bad",
                                         "columns": ["id", "value", "unit"]})}))
    _nothing_loaded(p, headless, "out/tables/zz.csv: rows have 2 fields but the columns are "
                    "['id', 'value', 'unit'] (3)")


def test_a_primary_key_column_missing_from_the_output_loads_nothing(tmp_path: Path) -> None:
    p = platform(tmp_path)
    job = p.run(outputs({"source": "zz.csv", "destination": "out.c-main.data",
                         "primary_key": ["id", "day"]},
                        write={**GOOD, "out/tables/zz.csv": "id,value\n1,2\n"}))
    _nothing_loaded(p, job, "storage.output.tables[0]: primary key column 'day' is missing "
                    "from the output columns ['id', 'value']")


def test_a_file_without_a_destination_loads_nothing(tmp_path: Path) -> None:
    p = platform(tmp_path)
    job = p.run(outputs(write={**GOOD, "out/tables/zz.csv": "id\n1\n"}))
    _nothing_loaded(p, job, "out/tables/zz.csv: no destination: no output mapping names one, "
                    "the manifest has none and 'zz' is not a table id")


def test_a_typed_manifest_of_the_current_library_format(tmp_path: Path) -> None:
    p = platform(tmp_path)
    schema = [{"name": "id", "data_type": {"base": {"type": "STRING"}}, "primary_key": True},
              {"name": "v", "data_type": {"base": {"type": "STRING"}}, "nullable": True}]
    headless = {"destination": "out.c-x.a", "incremental": True, "manifest_type": "out",
                "has_header": False, "schema": schema}
    with_header = {**headless, "destination": "out.c-x.b", "has_header": True}
    job = p.run(outputs(write={"out/tables/a.csv": "1,2\n3,4\n",
                               "out/tables/a.csv.manifest": json.dumps(headless),
                               "out/tables/b.csv": "id,v\n5,6\n",
                               "out/tables/b.csv.manifest": json.dumps(with_header)}))
    assert job.succeeded, job.message
    assert p.rows("out.c-x.a") == [{"id": "1", "v": "2"}, {"id": "3", "v": "4"}]
    assert p.rows("out.c-x.b") == [{"id": "5", "v": "6"}]
    assert p.tables.info("out.c-x.a").primary_key == ["id"]
