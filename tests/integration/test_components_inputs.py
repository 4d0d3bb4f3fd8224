"""Input mapping end to end: the contract's examples for tables and files, and bad input."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from _components import platform

from lakeport.components.config import parse_config
from lakeport.errors import Invalid
from waiting import wait_until

LEADS = ("Id,Name,Revenue,Date,Status\n1,Ann,10,2026-01-01,Closed Won\n"
         "2,Bob,20,2026-01-02,Open\n3,Cid,30,2026-01-03,Closed Lost\n")


def _tables(*tables: dict) -> dict:
    return {"storage": {"input": {"tables": list(tables)}}, "parameters": {}}


def _files(*files: dict, **params: object) -> dict:
    return {"storage": {"input": {"files": list(files)}}, "parameters": params}


def test_basic_input(tmp_path: Path) -> None:
    p = platform(tmp_path)
    p.load("in.c-ex-salesforce.Leads", LEADS, primary_key=["Id"])
    p.load("in.c-ex-salesforce.Accounts", "Id,Name\n7,Acme\n")
    job = p.run(_tables({"source": "in.c-ex-salesforce.Leads", "destination": "leads.csv"},
                        {"source": "in.c-ex-salesforce.Accounts",
                         "destination": "accounts.csv"}), keep=True)
    assert job.succeeded, job.message
    assert p.in_table("accounts.csv").splitlines() == ['"Id","Name"', '"7","Acme"']
    assert len(p.in_table("leads.csv").splitlines()) == 4
    manifest = json.loads((p.last_data / "in/tables/leads.csv.manifest").read_text())
    assert manifest["id"] == "in.c-ex-salesforce.Leads" and manifest["name"] == "Leads"
    assert manifest["columns"] == ["Id", "Name", "Revenue", "Date", "Status"]
    assert manifest["primary_key"] == ["Id"] and manifest["rows_count"] == 3
    config = json.loads((p.last_data / "config.json").read_text())
    assert config["storage"]["input"]["tables"][1]["destination"] == "accounts.csv"
    assert [t["rows"] for t in job.tables_in] == [3, 1]


def test_incremental_days_and_adaptive(tmp_path: Path) -> None:
    p = platform(tmp_path)
    p.load("in.c-storage.StoredData", "id,v\n1,a\n2,b\n")
    job = p.run(_tables({"source": "in.c-storage.StoredData", "days": "2"}), keep=True)
    assert job.succeeded, job.message
    # no destination: the file is named like the table
    assert p.in_table("in.c-storage.StoredData").splitlines()[1:] == ['"1","a"', '"2","b"']
    adaptive = _tables({"source": "in.c-storage.StoredData", "changed_since": "adaptive"})
    p.run(adaptive, config_id="adaptive")
    p.load("in.c-storage.StoredData", "id,v\n3,c\n", incremental=True)
    p.run(adaptive, config_id="adaptive", keep=True)
    assert p.in_table("in.c-storage.StoredData").splitlines()[1:] == ['"3","c"']


def test_select_columns(tmp_path: Path) -> None:
    p = platform(tmp_path)
    p.load("in.c-ex-salesforce.Leads", LEADS)
    job = p.run(_tables({"source": "in.c-ex-salesforce.Leads",
                         "columns": ["Id", "Revenue", "Date", "Status"]}), keep=True)
    assert job.succeeded, job.message
    lines = p.in_table("in.c-ex-salesforce.Leads").splitlines()
    assert lines[0] == '"Id","Revenue","Date","Status"' and lines[1] == (
        '"1","10","2026-01-01","Closed Won"')
    manifest = json.loads(
        (p.last_data / "in/tables/in.c-ex-salesforce.Leads.manifest").read_text())
    assert manifest["columns"] == ["Id", "Revenue", "Date", "Status"]


def test_filtered_table(tmp_path: Path) -> None:
    p = platform(tmp_path)
    p.load("in.c-ex-salesforce.Leads", LEADS)
    job = p.run(_tables({"source": "in.c-ex-salesforce.Leads", "destination":
                         "closed_leads.csv", "where_column": "Status",
                         "where_values": ["Closed Won", "Closed Lost"],
                         "where_operator": "eq"}), keep=True)
    assert job.succeeded, job.message
    names = [line.split(",")[1] for line in p.in_table("closed_leads.csv").splitlines()[1:]]
    assert sorted(names) == ['"Ann"', '"Cid"']
    p.run(_tables({"source": "in.c-ex-salesforce.Leads", "destination": "open.csv",
                   "where_column": "Status", "where_values": ["Closed Won", "Closed Lost"],
                   "where_operator": "ne"}), keep=True)
    assert p.in_table("open.csv").splitlines()[1:] == ['"2","Bob","20","2026-01-02","Open"']


def _upload(p, tmp_path: Path, name: str, tags: list[str], run_id: str | None = None) -> int:
    path = tmp_path / name
    path.write_text(f"content of {name}")
    return p.files.upload(path, tags=tags, run_id=run_id).id


def test_file_query(tmp_path: Path) -> None:
    p = platform(tmp_path)
    a = _upload(p, tmp_path, "fooBar.zip", ["docker-demo"])
    b = _upload(p, tmp_path, "fooBarBaz.zip", ["docker-demo", "x"])
    _upload(p, tmp_path, "notes.csv", ["docker-demo"])
    _upload(p, tmp_path, "other.zip", ["other"])
    job = p.run(_files({"tags": ["docker-demo"], "query": "name:.zip"}), keep=True)
    assert job.succeeded, job.message
    names = sorted(x.name for x in (p.last_data / "in/files").iterdir())
    assert names == [f"{a}_fooBar.zip", f"{a}_fooBar.zip.manifest", f"{b}_fooBarBaz.zip",
                     f"{b}_fooBarBaz.zip.manifest"]
    manifest = json.loads((p.last_data / f"in/files/{b}_fooBarBaz.zip.manifest").read_text())
    assert manifest["id"] == b and manifest["name"] == "fooBarBaz.zip"
    assert manifest["tags"] == ["docker-demo", "x"] and manifest["created"]
    assert (p.last_data / f"in/files/{a}_fooBar.zip").read_text() == "content of fooBar.zip"


def test_run_id_filter(tmp_path: Path) -> None:
    p = platform(tmp_path)
    producer = {"storage": {"output": {"files": [{"source": "a.txt", "tags": ["fooBar"]}]}},
                "parameters": {"write": {"out/files/a.txt": "from the chain"}}}
    made = p.run(producer, parent_run_id="500")
    assert made.succeeded and made.files_out[0]["tags"] == ["fooBar"]
    _upload(p, tmp_path, "elsewhere.txt", ["fooBar"], run_id="600.1")
    _upload(p, tmp_path, "no-run.txt", ["fooBar"])
    job = p.run(_files({"tags": ["fooBar"], "filter_by_run_id": True}), parent_run_id="500",
                keep=True)
    assert job.succeeded, job.message
    assert [f["name"] for f in job.files_in] == ["a.txt"]
    everything = p.run(_files({"tags": ["fooBar"]}), parent_run_id="500")
    assert len(everything.files_in) == 3


def test_processed_tags_mark_exactly_the_files_handed_to_the_run(tmp_path: Path) -> None:
    p = platform(tmp_path)
    first = [_upload(p, tmp_path, f"f{i}.csv", ["toprocess"]) for i in range(2)]
    gate = tmp_path / "gate"
    mapping = {"query": "tags: toprocess AND NOT tags: downloaded",
               "processed_tags": ["downloaded"]}
    result = {}
    run = threading.Thread(target=lambda: result.setdefault(
        "job", p.run(_files(mapping, wait_for=str(gate)))))
    run.start()
    assert wait_until(lambda: Path(str(gate) + ".started").exists(), 30), "the first run"
    late = _upload(p, tmp_path, "late.csv", ["toprocess"])  # arrives while the run runs
    gate.write_text("")
    run.join(60)
    assert result["job"].succeeded, result["job"].message
    assert [f["id"] for f in result["job"].files_in] == sorted(first, reverse=True)
    assert all("downloaded" in p.files.get(i).tags for i in first)
    assert "downloaded" not in p.files.get(late).tags
    failed = p.run(_files(mapping, exit=1))
    assert [f["id"] for f in failed.files_in] == [late]
    assert "downloaded" not in p.files.get(late).tags  # a failed run marks nothing
    second = p.run(_files(mapping))
    assert [f["id"] for f in second.files_in] == [late]
    assert "downloaded" in p.files.get(late).tags


def test_a_missing_input_table_is_an_error_before_the_run(tmp_path: Path) -> None:
    p = platform(tmp_path)
    job = p.run(_tables({"source": "in.c-main.nope"}))
    assert job.state == "error" and job.exit_code is None
    assert job.message == "storage.input.tables[0]: table 'in.c-main.nope' does not exist"


def test_a_file_mapping_over_ten_matches_needs_a_limit(tmp_path: Path) -> None:
    p = platform(tmp_path)
    for i in range(12):
        _upload(p, tmp_path, f"f{i}.csv", ["many"])
    job = p.run(_files({"tags": ["many"]}))
    assert job.state == "error" and job.exit_code is None
    assert job.message == ("storage.input.files[0]: 12 files match, more than the default "
                           "limit of 10; set a limit or narrow the tags or query")
    limited = p.run(_files({"tags": ["many"], "limit": 12}))
    assert limited.succeeded and len(limited.files_in) == 12
    assert len(p.run(_files({"tags": ["many"], "limit": 3})).files_in) == 3


@pytest.mark.parametrize(("config", "message"), [
    ({"storage": {"input": {"tables": [{"source": "in.c-a.b"}]}}, "paramters": {}},
     "config.json: paramters: unknown key"),
    ({"storage": {"input": {"tables": [{"source": "in.c-a.b", "colums": ["x"]}]}}},
     "config.json: storage.input.tables[0].colums: unknown key"),
    ({"storage": {"input": {"tables": [{"source": "in.c-a.b", "where_column": "s"}]}}},
     "config.json: storage.input.tables[0]: where_column 's' needs where_values"),
    ({"storage": {"input": {"tables": [{"source": "in.c-a.b", "days": 2,
                                        "changed_since": "-1 day"}]}}},
     "config.json: storage.input.tables[0]: days and changed_since cannot be used together"),
    ({"storage": {"input": {"files": [{"processed_tags": ["x"]}]}}},
     "config.json: storage.input.files[0]: a file mapping needs tags or a query"),
])
def test_bad_configuration(config: dict, message: str) -> None:
    with pytest.raises(Invalid) as error:
        parse_config(config)
    assert str(error.value) == message
