"""``lakeport projects`` and ``lakeport tasks`` as a user runs them against a server (SQLite),
a worker simulated by hand with a worker key: deploy, start --follow through a retry,
start --wait of a failing task, run history, logs, pause/resume/stop, reschedule, copy,
links, one-line errors and help with an example per command (checked in process)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e._cli import LAKEPORT, assert_user_error
from server_fixtures import Platform
from task_helpers import zip_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
on_sqlite = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
API = "/api/v1/tasks"


class Cli:
    def __init__(self, platform: Platform) -> None:
        self.env = {**os.environ, "LAKEPORT_URL": platform.url,
                    "LAKEPORT_API_KEY": platform.api_key}

    def __call__(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        env = self.env if key is None else {**self.env, "LAKEPORT_API_KEY": key}
        return subprocess.run([*LAKEPORT, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, env=env)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*LAKEPORT, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env,
                                stdin=subprocess.DEVNULL)


class Worker:
    """The worker protocol spoken by hand."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def claim(self) -> dict[str, Any]:
        answer = self.http.post(f"{API}/claim", json={"worker": "w1", "runtimes": ["sh"],
                                                      "wait": 10})
        assert answer.status_code == 200, answer.text
        return answer.json()["attempts"][0]

    def run(self, output: bytes, outcome: str = "succeeded") -> dict[str, Any]:
        attempt = self.claim()
        if output:
            self.http.post(f"{API}/attempts/{attempt['id']}/logs/stdout",
                           params={"offset": 0}, content=output,
                           headers={"x-attempt-token": attempt["token"]})
        answer = self.http.post(f"{API}/attempts/{attempt['id']}/finish",
                                json={"token": attempt["token"], "outcome": outcome,
                                      "exit_code": 0 if outcome == "succeeded" else 3,
                                      "reason": "" if outcome == "succeeded" else "exit 3"})
        assert answer.status_code == 200, answer.text
        return attempt


@pytest.fixture
def worker(platform: Platform) -> Iterator[Worker]:
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key

    async def make() -> str:
        async with Store(platform.settings.store_url) as store:
            return await create_key(store, "w1", worker=True)

    with platform.client(asyncio.run(make())) as http:
        yield Worker(http)



@on_sqlite
def test_deploy_start_follow_and_control(platform: Platform, worker: Worker,
                                         tmp_path: Path) -> None:
    cli = Cli(platform)
    main = tmp_path / "main.sh"
    main.write_text("echo hello\n")
    inputs = zip_file(tmp_path / "in.zip", {"data.csv": b"1,2\n"})
    assert "created project plant" in cli.ok("projects", "create", "plant",
                                             "--description", "jobs").stderr
    cli.ok("projects", "create", "lab")
    assert [p["name"] for p in cli.json("projects", "ls")] == ["lab", "plant"]
    assert "jobs" in cli.ok("projects", "ls").stdout

    task = cli.json("tasks", "deploy", "plant", "report", "--runtime", "sh", "--executable",
                    str(main), "--inputs", str(inputs), "--arg", "a b", "--env", "MODE=x",
                    "--timeout", "30s", "--retries", "1", "--backoff", "0s", "--memory",
                    "64MB", "--cpu-time", "1.5s")
    spec = task["spec"]
    assert task["version"] == 1 and task["executable"] == "main.sh"
    assert spec["args"] == ["a b"] and spec["env"] == {"MODE": "x"} and spec["timeout"] == 30
    assert spec["retries"]["count"] == 1 and spec["retries"]["backoff"] == 0
    assert spec["memory_mb"] == 64 and spec["cpu_seconds"] == 2
    assert_user_error(cli("tasks", "deploy", "plant", "report", "--runtime", "sh",
                          "--executable", str(main)), "overwrite")
    again = cli.ok("tasks", "deploy", "plant", "report", "--runtime", "sh", "--executable",
                   str(main), "--retries", "1", "--backoff", "0s", "--overwrite")
    assert "deployed plant/report version 2" in again.stderr
    assert "manual (tasks start)" in again.stdout and "report" in cli.ok(
        "tasks", "ls", "plant").stdout

    # --follow prints the output of each attempt as it comes, through a retry
    follow = cli.background("tasks", "start", "plant", "report", "--param", "day=1",
                            "--follow")
    first = worker.run(b"hello\n", "failed")
    assert first["parameters"] == {"day": "1"}
    worker.run(b"again\n")
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 0, err
    assert out == "hello\nagain\n"
    assert f"run {first['run']} succeeded" in err and "-- attempt 2" in err

    # --wait on a run that fails every attempt: exit 1 naming the state
    waiting = cli.background("tasks", "start", "plant", "report", "--wait")
    failed = worker.run(b"", "failed")
    worker.run(b"", "failed")
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 1 and f"run {failed['run']} failed: exit 3" in err

    runs = cli.json("tasks", "runs", "plant", "report", "--state", "failed")
    assert [r["id"] for r in runs] == [failed["run"]]
    table = cli.ok("tasks", "runs", "plant", "report", "--limit", "1").stdout
    assert "failed" in table and "succeeded" not in table
    shown = cli.ok("tasks", "run", str(first["run"])).stdout
    assert "attempts" in shown and "events" in shown and "exit 3" in shown
    assert cli.ok("tasks", "logs", str(first["run"]), "--attempt", "1").stdout == "hello\n"
    assert cli.ok("tasks", "logs", str(first["run"])).stdout == "again\n"
    assert cli.ok("tasks", "logs", str(first["run"]), "--stderr").stdout == ""

    run = cli.json("tasks", "start", "plant", "report")
    assert run["state"] == "queued" and "no worker offers" not in run.get("waiting", "")
    assert cli.json("tasks", "pause", str(run["id"]))["state"] == "paused"
    assert cli.json("tasks", "resume", str(run["id"]))["state"] == "queued"
    assert "cancelled" in cli.ok("tasks", "stop", str(run["id"])).stdout
    assert_user_error(cli("tasks", "stop", str(run["id"])), f"run {run['id']} has ended")


@on_sqlite
def test_schedules_copies_links_and_errors(platform: Platform, tmp_path: Path) -> None:
    cli = Cli(platform)
    main = tmp_path / "main.sh"
    main.write_text("echo hello\n")
    cli.ok("projects", "create", "plant")
    cli.ok("projects", "create", "lab")
    task = cli.json("tasks", "deploy", "plant", "nightly", "--runtime", "sh",
                    "--executable", str(main), "--cron", "0 3 * * *", "--timezone",
                    "Europe/Berlin", "--limit", "3", "--catchup", "latest")
    assert task["spec"]["schedule"] == {"kind": "cron", "expression": "0 3 * * *",
                                        "timezone": "Europe/Berlin", "limit": 3,
                                        "catchup": "latest"}
    assert task["next_run"] is not None
    shown = cli.ok("tasks", "show", "plant", "nightly").stdout
    assert "cron '0 3 * * *' Europe/Berlin, 3 runs, catchup latest" in shown
    moved = cli.json("tasks", "reschedule", "plant", "nightly", "--at", "2099-01-01T00:00:00Z")
    assert moved["next_run"].startswith("2099-01-01")
    assert cli.json("tasks", "reschedule", "plant", "nightly", "--manual")["next_run"] is None

    copy = cli.json("tasks", "copy", "plant", "nightly", "daily", "--to-project", "lab")
    assert copy["project"] == "lab" and copy["executable"] == "main.sh"
    links = cli.json("tasks", "link", "lab", "daily", "--from", "plant/nightly:out.csv",
                     "--from", "plant/nightly:model.bin")
    assert [link["file"] for link in links] == ["out.csv", "model.bin"]
    assert "plant/nightly:out.csv" in cli.ok("tasks", "show", "lab", "daily").stdout
    assert cli.json("tasks", "link", "lab", "daily", "--clear") == []

    bob = platform.key_for("bob")
    for args, fragments in [
        (("tasks", "deploy", "plant", "x", "--runtime", "cobol", "--executable", str(main)),
         ("unknown runtime 'cobol'",)),
        (("tasks", "deploy", "plant", "x", "--runtime", "sh", "--executable", "nope.sh"),
         ("no such file",)),
        (("tasks", "deploy", "plant", "x", "--runtime", "sh", "--executable", str(main),
          "--at", "01-01-2020 10:00:00.000 IST"), ("is in the past",)),
        (("tasks", "deploy", "plant", "x", "--runtime", "sh", "--executable", str(main),
          "--cron", "61 * * * *"), ("cron",)),
        (("tasks", "deploy", "plant", "x", "--runtime", "sh", "--timezone", "UTC"),
         ("--timezone, --limit and --catchup go with --cron",)),
        (("tasks", "deploy", "plant", "x", "--runtime", "sh", "--memory", "lots"),
         ("--memory", "bad size")),
        (("tasks", "deploy", "plant", "x", "--runtime", "sh", "--timeout", "soon"),
         ("--timeout", "bad duration")),
        (("tasks", "reschedule", "plant", "nightly"), ("--at, --cron or --manual",)),
        (("tasks", "link", "lab", "daily", "--from", "plant:out.csv"), ("PROJECT/TASK:FILE",)),
        (("tasks", "start", "plant", "nightly", "--param", "novalue"), ("--param",)),
        (("tasks", "logs", "999"), ("999",)),
        (("projects", "create", "plant"), ("exists",)),
    ]:
        assert_user_error(cli(*args), *fragments)
    assert_user_error(cli("tasks", "show", "plant", "nightly", key=bob), "plant")
    assert cli("projects", "ls", key=bob).stdout == ""

    cli.ok("tasks", "rm", "lab", "daily")
    assert cli.json("tasks", "ls", "lab") == []
    assert "deleted project plant" in cli.ok("projects", "rm", "plant").stderr
    assert [p["name"] for p in cli.json("projects", "ls")] == ["lab"]



def test_every_command_s_help_has_an_example() -> None:
    from typer.testing import CliRunner

    from lakeport.cli.main import app

    runner = CliRunner()
    commands = [("tasks", name) for name in (
        "deploy", "start", "pause", "resume", "stop", "reschedule", "copy", "link", "ls",
        "show", "runs", "run", "logs", "rm")] + [("projects", name) for name in
                                                ("create", "ls", "rm")]
    for group, name in commands:
        result = runner.invoke(app, [group, name, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert f"Example: lakeport {group} {name}" in result.output, (group, name)
