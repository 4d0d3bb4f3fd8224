"""``lakeport tables ...`` on a local lake: create, import, show, preview, export, rm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakeport.tables import TableStore


def lakeport(lake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAKEPORT_TABLES": str(lake), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "lakeport.cli", "tables", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def ok(lake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = lakeport(lake, *args)
    assert done.returncode == 0, done.stderr
    return done


def test_a_table_from_create_to_rm(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    ok(lake, "create", "in.c-main.readings", "--columns", "id,site,value",
       "--primary-key", "id", "--description", "press readings")
    (tmp_path / "a.csv").write_text("id,site,value\n1,n,10\n2,s,20\n3,s,30\n")
    done = ok(lake, "import", "in.c-main.readings", str(tmp_path / "a.csv"))
    assert "loaded 3 rows into in.c-main.readings" in done.stderr
    (tmp_path / "b.csv").write_text("3;s;31\n4;e;40\n")
    done = ok(lake, "import", "in.c-main.readings", str(tmp_path / "b.csv"), "--incremental",
              "--columns", "id,site,value", "--delimiter", ";", "--json")
    assert json.loads(done.stdout)["rows_loaded"] == 2
    info = json.loads(ok(lake, "show", "in.c-main.readings", "--json").stdout)
    assert (info["rows"], info["primary_key"], info["description"]) == (4, ["id"],
                                                                        "press readings")
    listed = json.loads(ok(lake, "ls", "--json").stdout)
    assert [t["id"] for t in listed] == ["in.c-main.readings"]
    preview = ok(lake, "preview", "in.c-main.readings", "--limit", "2").stdout
    assert "site" in preview and "value" in preview
    ok(lake, "export", "in.c-main.readings", str(tmp_path / "out.csv"), "--where-column",
       "site", "--where-values", "s", "--columns", "id,value")
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == '"id","value"' and sorted(lines[1:]) == ['"2","20"', '"3","31"']
    ok(lake, "export", "in.c-main.readings", str(tmp_path / "out.parquet"), "--format",
       "parquet", "--days", "1")
    assert TableStore(lake).read("in.c-main.readings").num_rows == 4
    ok(lake, "rm", "in.c-main.readings")
    assert not TableStore(lake).exists("in.c-main.readings")


@pytest.mark.parametrize(("args", "message"), [
    (("show", "in.c-main.nope"), "table in.c-main.nope does not exist"),
    (("show", "main.readings"), "bad table id 'main.readings'"),
    (("export", "in.c-main.t", "x.csv", "--where-column", "a"),
     "where_column 'a' without where_values"),
    (("export", "in.c-main.t", "x.csv", "--days", "1", "--changed-since", "2026-01-01"),
     "days and changed_since both given"),
    (("import", "in.c-main.t", "missing.csv"), "CSV source 'missing.csv' does not exist"),
])
def test_errors_are_one_line_and_exit_1(tmp_path: Path, args: tuple[str, ...],
                                        message: str) -> None:
    done = lakeport(tmp_path / "lake", *args)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: {done.stderr.strip()[7:]}"]
    assert message in done.stderr
