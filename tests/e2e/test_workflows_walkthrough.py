"""The worked example of docs/server/workflows.md as a user runs it: ``lakeport serve`` with its
local worker, driven by the CLI. Two py tasks are deployed (``aggregate`` reads the Parquet
file a files trigger names through the files API, with a key from the server's secrets, and
sums it up with DuckDB from its requirements.txt; ``report`` turns the summary it takes as an
input into text), the workflow is applied, and Parquet files uploaded under the watched path
start one instance each: the report is downloaded from the report node's outputs and the
status tree shows both nodes succeeded. A file written again at the same path, and a file one
folder deeper than the pattern reaches, start none.

The task files, the workflow file and the script that writes the Parquet file are the code
blocks of the page (each starts with a comment naming its file), and the report and the tree
the page shows are checked against what the server gives, so the page shows what runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from e2e._cli import LAKEPORT
from servers import lakeport_server
from task_helpers import zip_file
from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PAGE = Path(__file__).resolve().parents[2] / "docs" / "server" / "workflows.md"
ENDED = ("succeeded", "failed", "cancelled")
WORKFLOW = "line1-report"
FIRST = "exports/line1/2026-01-15T06.parquet"
REPORT = """\
line 1 report for exports/line1/2026-01-15T06.parquet
pump-01  temperature    60 readings, mean 21.50 (20.0 to 23.0)
pump-02  temperature    60 readings, mean 31.50 (30.0 to 33.0)
"""


def page_files() -> dict[str, str]:
    """The code blocks of the page that start with ``# NAME`` (``# report.py: ...``), by
    name."""
    blocks = re.findall(r"```[a-z]*\n(# ([\w.]+)(?::[^\n]*)?\n.*?)```", PAGE.read_text(),
                        re.DOTALL)
    return {name: text for text, name in blocks}


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*LAKEPORT, *args], capture_output=True, text=True,
                                timeout=120, stdin=subprocess.DEVNULL, env=self.env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def __call__(self, *args: str) -> str:
        return self.run(*args).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json"))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Cli, str]]:
    env = {**os.environ, "LAKEPORT_HOME": str(tmp_path / "home")}
    for name in ("LAKEPORT_URL", "LAKEPORT_API_KEY"):
        env.pop(name, None)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    key = subprocess.run([*LAKEPORT, "keys", "create", "--user", "alice", "--store", store],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    command = [*LAKEPORT, "serve", "--store", store, "--lake", (tmp_path / "lake").as_uri(),
               "--streams", (tmp_path / "streams").as_uri(), "--workers", "1"]
    with lakeport_server(command, env) as (url, _):
        env.update(LAKEPORT_URL=url, LAKEPORT_API_KEY=key)
        yield Cli(env), url


def write_hour(path: Path, hour: int, assets: dict[str, float]) -> Path:
    """An hour of temperature readings a minute apart for ``assets`` (name → base value),
    as the page's export_hour.py writes them."""
    start = datetime(2026, 1, 15, hour, tzinfo=UTC)
    rows = [(start + timedelta(minutes=minute), asset, "temperature", base + minute % 4)
            for minute in range(60) for asset, base in assets.items()]
    time, asset, datastream, value = zip(*rows, strict=True)
    pq.write_table(pa.table({"time": time, "asset": asset, "datastream": datastream,
                             "value_number": value}), path)
    return path


def instances(cli: Cli) -> list[dict[str, Any]]:
    return cli.json("workflows", "history", WORKFLOW)


def all_ended(cli: Cli, count: int) -> bool:
    rows = instances(cli)
    return len(rows) == count and all(row["state"] in ENDED for row in rows)


def report_of(cli: Cli, instance_id: int, dest: Path) -> str:
    """The report.txt the report node's run left (downloaded with lakeport files get)."""
    status = cli.json("workflows", "status", str(instance_id))
    node = next(node for node in status["nodes"] if node["name"] == "report")
    cli("files", "get", f"{node['attempts'][-1]['outputs']}/report.txt", str(dest))
    return dest.read_text()


def test_files_landing_run_the_two_step_workflow(served: Any, tmp_path: Path) -> None:
    cli, url = served
    files = page_files()
    work = tmp_path / "work"
    work.mkdir()
    for name in ("aggregate.py", "requirements.txt", "report.py", "flow.yaml",
                 "export_hour.py"):
        (work / name).write_text(files[name])

    # the two tasks: aggregate with its requirements and the lake key as a secret
    cli("projects", "create", "plant")
    cli("secret", "create", "lake-reader", "--value", cli.env["LAKEPORT_API_KEY"])
    deps = zip_file(work / "deps.zip", {"requirements.txt": files["requirements.txt"].encode()})
    cli("tasks", "deploy", "plant", "aggregate", "--runtime", "py",
        "--executable", str(work / "aggregate.py"), "--dependencies", str(deps),
        "--env", f"LAKEPORT_URL={url}", "--env", "LAKEPORT_API_KEY=<% secrets.lake-reader %>")
    cli("tasks", "deploy", "plant", "report", "--runtime", "py",
        "--executable", str(work / "report.py"))
    applied = cli.run("workflows", "apply", str(work / "flow.yaml"))
    assert applied.stderr.strip() == f"created workflow {WORKFLOW} version 1"
    assert instances(cli) == []

    # a file the exporter lands starts an instance: aggregate, then report
    subprocess.run([sys.executable, str(work / "export_hour.py")], cwd=work, check=True,
                   timeout=60)
    first = work / "2026-01-15T06.parquet"
    cli("files", "put", str(first), FIRST)
    assert wait_until(lambda: all_ended(cli, 1), 120), instances(cli)
    [one] = instances(cli)
    assert (one["state"], one["trigger"], one["parameters"]) == (
        "succeeded", "files", {"path": FIRST}), one
    report = report_of(cli, one["id"], tmp_path / "report-1.txt")
    assert report == REPORT
    assert report in PAGE.read_text(), "the page shows the report the example writes"

    tree = cli("workflows", "status", str(one["id"])).splitlines()
    assert tree[0] == f"instance {one['id']} of {WORKFLOW} v1: succeeded  2 succeeded", tree
    assert re.fullmatch(r"└── aggregate: succeeded  1 attempt  run \d+  plant/aggregate",
                        tree[1]), tree
    assert re.fullmatch(r"    └── report: succeeded  1 attempt  run \d+  plant/report",
                        tree[2]), tree
    assert len(tree) == 3, tree
    assert "\n".join(tree) in PAGE.read_text(), "the page shows the tree status draws"
    mapping = {row["node"]: row["copy"] for row in cli.json("workflows", "mapping",
                                                            str(one["id"]))}
    assert mapping == {"aggregate": f"plant/aggregate@{one['id']}",
                       "report": f"plant/report@{one['id']}"}

    # a second file starts a second instance, with its own path and report
    second = write_hour(work / "2026-01-15T07.parquet", 7, {"pump-03": 40.0})
    cli("files", "put", str(second), "exports/line1/2026-01-15T07.parquet")
    assert wait_until(lambda: all_ended(cli, 2), 120), instances(cli)
    two = instances(cli)[0]
    assert (two["state"], two["parameters"]) == (
        "succeeded", {"path": "exports/line1/2026-01-15T07.parquet"}), two
    assert report_of(cli, two["id"], tmp_path / "report-2.txt") == (
        "line 1 report for exports/line1/2026-01-15T07.parquet\n"
        "pump-03  temperature    60 readings, mean 41.50 (40.0 to 43.0)\n")

    # the first file written again, and a file one folder deeper than the pattern, start
    # nothing: once a later matching file has its instance, the trigger has looked past them
    cli("files", "put", str(second), FIRST, "--overwrite")
    cli("files", "put", str(second), "exports/line1/late/2026-01-15T07.parquet")
    third = write_hour(work / "2026-01-15T08.parquet", 8, {"pump-01": 25.0})
    cli("files", "put", str(third), "exports/line1/2026-01-15T08.parquet")
    assert wait_until(lambda: all_ended(cli, 3), 120), instances(cli)
    assert [(row["parameters"]["path"], row["state"]) for row in instances(cli)] == [
        ("exports/line1/2026-01-15T08.parquet", "succeeded"),
        ("exports/line1/2026-01-15T07.parquet", "succeeded"),
        (FIRST, "succeeded")]
