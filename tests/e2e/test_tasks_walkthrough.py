"""The task service as a user runs it: ``lakeport serve`` with its local worker, driven by
the CLI. A py task with a requirements.txt and an input zip writes out/ (downloaded with
``lakeport files get``); another task gets that output through a link; a delayed task fires
at its time; a cron task with limit 3 runs exactly three times; pause holds a running task,
resume continues it, stop ends it and its children."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e._cli import LAKEPORT
from servers import lakeport_server
from task_helpers import alive, zip_file
from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ENDED = ("succeeded", "failed", "cancelled", "lost")


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str) -> str:
        result = subprocess.run([*LAKEPORT, *args], capture_output=True, text=True,
                                timeout=120, stdin=subprocess.DEVNULL, env=self.env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout



@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Cli, httpx.Client]]:
    env = {**os.environ, "LAKEPORT_HOME": str(tmp_path / "home")}
    store = f"sqlite:///{tmp_path / 'store.db'}"
    key = subprocess.run([*LAKEPORT, "keys", "create", "--user", "alice", "--store", store],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    command = [*LAKEPORT, "serve", "--store", store, "--lake", (tmp_path / "lake").as_uri(),
               "--streams", (tmp_path / "streams").as_uri(), "--workers", "1"]
    with lakeport_server(command, env) as (url, _):
        env.update(LAKEPORT_URL=url, LAKEPORT_API_KEY=key)
        with httpx.Client(base_url=f"{url}/api/v1/tasks", headers={"x-api-key": key},
                          timeout=30) as api:
            yield Cli(env), api


def runs(api: httpx.Client, task: str) -> list[dict[str, Any]]:
    return api.get(f"/projects/plant/tasks/{task}/runs").json()["items"]


def test_deploy_run_link_schedule_and_control(served: Any, tmp_path: Path) -> None:
    cli, api = served
    cli("projects", "create", "plant")

    # a py task with its own requirements and an input zip leaves a file in out/
    report = tmp_path / "report.py"
    report.write_text(
        "import os, six\n"
        "data = open(os.path.join(os.environ['LAKEPORT_TASK_IN'], 'data.csv')).read()\n"
        "out = os.path.join(os.environ['LAKEPORT_TASK_OUT'], 'result.txt')\n"
        "open(out, 'w').write(f'six {six.__version__} rows {data.count(chr(10))}')\n")
    cli("tasks", "deploy", "plant", "report", "--runtime", "py", "--executable", str(report),
        "--dependencies", str(zip_file(tmp_path / "deps.zip",
                                     {"requirements.txt": b"six==1.16.0\n"})),
        "--inputs", str(zip_file(tmp_path / "in.zip", {"data.csv": b"a\nb\nc\n"})))
    done = json.loads(cli("tasks", "start", "plant", "report", "--wait", "--json"))
    assert done["state"] == "succeeded", done
    result = tmp_path / "result.txt"
    cli("files", "get", f"tasks/plant/report/{done['id']}/out/result.txt", str(result))
    assert result.read_text() == "six 1.16.0 rows 3"

    # a linked output of that task appears in another task's in/
    consumer = tmp_path / "consumer.sh"
    consumer.write_text('cp "$LAKEPORT_TASK_IN/result.txt" "$LAKEPORT_TASK_OUT/copy.txt"\n')
    cli("tasks", "deploy", "plant", "consumer", "--runtime", "sh", "--executable",
        str(consumer))
    cli("tasks", "link", "plant", "consumer", "--from", "plant/report:result.txt")
    linked = json.loads(cli("tasks", "start", "plant", "consumer", "--wait", "--json"))
    copy = tmp_path / "copy.txt"
    cli("files", "get", f"tasks/plant/consumer/{linked['id']}/out/copy.txt", str(copy))
    assert copy.read_text() == "six 1.16.0 rows 3"

    # a delayed task fires at its time; a cron task with limit 3 runs exactly three times
    stamp = tmp_path / "stamp.sh"
    stamp.write_text("date +%s.%N\n")
    at = datetime.now(UTC) + timedelta(seconds=4)
    cli("tasks", "deploy", "plant", "later", "--runtime", "sh", "--executable", str(stamp),
        "--at", at.isoformat())
    cli("tasks", "deploy", "plant", "thrice", "--runtime", "sh", "--executable", str(stamp),
        "--cron", "*/2 * * * * *", "--limit", "3")
    # (not before its time: the run's first line is the time it started, checked below)
    assert wait_until(lambda: [r["state"] for r in runs(api, "later")] == ["succeeded"], 30)
    fired = datetime.fromtimestamp(float(api.get(
        f"/runs/{runs(api, 'later')[0]['id']}/logs").text), UTC)
    assert at <= fired < at + timedelta(seconds=5), (at, fired)
    assert wait_until(lambda: len([r for r in runs(api, "thrice") if r["state"] in ENDED])
                      == 3, 40)
    slots = sorted(r["slot"] for r in runs(api, "thrice"))
    assert len(set(slots)) == 3
    assert api.get("/projects/plant/tasks/thrice").json()["state"] == "done"
    time.sleep(2.5)  # a fourth slot has passed: nothing more may fire
    assert len(runs(api, "thrice")) == 3

    # pause holds a running task, resume continues it, stop ends it and its children
    ticks, child = tmp_path / "ticks", tmp_path / "child.pid"
    loop = tmp_path / "loop.py"
    loop.write_text(
        "import subprocess, time\n"
        f"child = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(child)!r}, 'w').write(str(child.pid))\n"
        "n = 0\n"
        "while True:\n"
        "    n += 1\n"
        f"    open({str(ticks)!r}, 'w').write(str(n))\n"
        "    time.sleep(0.02)\n")
    cli("tasks", "deploy", "plant", "loop", "--runtime", "py", "--executable", str(loop))
    run_id = str(json.loads(cli("tasks", "start", "plant", "loop", "--json"))["id"])
    assert wait_until(lambda: ticks.exists() and child.exists(), 30)
    cli("tasks", "pause", run_id)
    assert wait_until(lambda: api.get(f"/runs/{run_id}").json()["state"] == "paused")
    held = ticks.read_text()
    time.sleep(0.5)  # a held task makes no progress, however long one looks
    assert ticks.read_text() == held
    cli("tasks", "resume", run_id)
    assert wait_until(lambda: ticks.read_text() != held), "the task goes on after resume"
    cli("tasks", "stop", run_id)
    assert wait_until(lambda: api.get(f"/runs/{run_id}").json()["state"] == "cancelled")
    assert wait_until(lambda: not alive(int(child.read_text()))), "a child outlived its task"



