"""Workers run what the server queues: the local worker of ``lakeport serve`` (a real
``lakeport worker`` process) runs a py task with its dependencies, inputs, parameters and
outputs; pause holds a running task, stop ends it and its children, a timeout fails it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server_fixtures import Platform, platform_settings, running_platform
from task_helpers import alive, zip_bytes
from waiting import wait_until

API = "/api/v1/tasks"
ENDED = ("succeeded", "failed", "cancelled", "lost")
LOG_CAP = 64 << 10



@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, httpx.Client]]:
    """One server with its local worker for the module's tests (each uses tasks of its own)."""
    folder = tmp_path_factory.mktemp("served")
    settings = platform_settings(f"sqlite:///{folder / 'store.db'}", folder, workers=1,
                                 worker_concurrency=2, task_log_cap=LOG_CAP)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAKEPORT_HOME", str(folder / "home"))  # the worker's folder
        with running_platform(settings) as platform, platform.client() as http:
            assert http.post(f"{API}/projects", json={"name": "plant"}).status_code == 201
            yield platform, http


def deploy(http: httpx.Client, task: str, code: bytes, spec: dict[str, Any] | None = None,
           **zips: dict[str, bytes]) -> None:
    files: dict[str, Any] = {"executable": ("main.py", code)}
    files.update({part: (f"{part}.zip", zip_bytes(content)) for part, content in zips.items()})
    answer = http.put(f"{API}/projects/plant/tasks/{task}",
                      data={"spec": json.dumps({"runtime": "py", **(spec or {})})}, files=files)
    assert answer.status_code == 201, answer.text


def start(http: httpx.Client, task: str, **parameters: str) -> int:
    answer = http.post(f"{API}/projects/plant/tasks/{task}/start",
                       json={"parameters": parameters})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def run_of(http: httpx.Client, run_id: int) -> dict[str, Any]:
    return http.get(f"{API}/runs/{run_id}").json()


def ended(http: httpx.Client, run_id: int, timeout: float = 60) -> dict[str, Any]:
    assert wait_until(lambda: run_of(http, run_id)["state"] in ENDED, timeout), \
        run_of(http, run_id)
    return run_of(http, run_id)


def test_a_py_task_gets_its_code_inputs_and_parameters_and_leaves_outputs(served: Any) -> None:
    _, http = served
    code = b"""import os, sys, helper
inputs, out = os.environ["LAKEPORT_TASK_IN"], os.environ["LAKEPORT_TASK_OUT"]
data = open(os.path.join(inputs, "data.csv")).read()
os.makedirs(os.path.join(out, "sub"))
open(os.path.join(out, "sub", "result.txt"), "w").write(f"{helper.VALUE + 1}:{data}")
print("day", os.environ["LAKEPORT_PARAM_DAY"], "args", sys.argv[1:], "mode", os.environ["MODE"])
print("api key leaked" if "LAKEPORT_API_KEY" in os.environ else "no key", file=sys.stderr)
"""
    deploy(http, "report", code, {"args": ["--fast"], "env": {"MODE": "m1"}},
           dependencies={"helper.py": b"VALUE = 41\n"}, inputs={"data.csv": b"1,2\n"})
    run = ended(http, start(http, "report", day="7"))
    assert run["state"] == "succeeded", run
    assert [e["state"] for e in run["events"]] == ["queued", "running", "succeeded"]
    logs = http.get(f"{API}/runs/{run['id']}/logs").text
    assert logs == "day 7 args ['--fast'] mode m1\n"
    assert "no key" in http.get(f"{API}/runs/{run['id']}/logs", params={"stream": "stderr"}).text
    folder = f"/api/v1/files/tasks/plant/report/{run['id']}"
    assert http.get(f"{folder}/out/sub/result.txt").text == "42:1,2\n"
    assert wait_until(lambda: http.get(f"{folder}/attempt-1/stdout.log").status_code == 200)


def test_pause_holds_a_task_and_stop_ends_it_with_its_children(served: Any,
                                                                tmp_path: Path) -> None:
    _, http = served
    ticks, child = tmp_path / "ticks", tmp_path / "child.pid"
    code = f"""import os, subprocess, time
child = subprocess.Popen(["sleep", "600"])
open({str(child)!r}, "w").write(str(child.pid))
n = 0
while True:
    n += 1
    open({str(ticks)!r}, "w").write(str(n))
    time.sleep(0.02)
""".encode()
    deploy(http, "loop", code)
    run_id = start(http, "loop")
    assert wait_until(lambda: ticks.exists() and child.exists(), 60), run_of(http, run_id)
    http.post(f"{API}/runs/{run_id}/pause")
    assert wait_until(lambda: run_of(http, run_id)["state"] == "paused")
    held = ticks.read_text()
    time.sleep(0.5)  # a held task makes no progress, however long one looks
    assert ticks.read_text() == held
    http.post(f"{API}/runs/{run_id}/resume")
    assert wait_until(lambda: ticks.read_text() != held), "the task goes on after resume"
    http.post(f"{API}/runs/{run_id}/stop")
    run = ended(http, run_id)
    assert run["state"] == "cancelled", run
    pid = int(child.read_text())
    assert wait_until(lambda: not alive(pid)), "the task's child outlived it"


def test_a_task_over_its_timeout_fails_and_is_retried(served: Any) -> None:
    _, http = served
    deploy(http, "slow", b"import time\nprint('started', flush=True)\ntime.sleep(600)\n",
           {"timeout": 1, "retries": {"count": 1, "backoff": 0}})
    run = ended(http, start(http, "slow"))
    assert run["state"] == "failed" and "timed out after 1 s" in run["reason"], run
    assert [a["state"] for a in run["attempt_list"]] == ["failed", "failed"]
    assert http.get(f"{API}/runs/{run['id']}/logs", params={"attempt": 1}).text == "started\n"


def test_a_task_printing_far_more_than_the_cap_keeps_the_tail(served: Any) -> None:
    _, http = served
    deploy(http, "chatty", b"for i in range(400_000):\n    print(f'line {i:07d}')\n")
    run = ended(http, start(http, "chatty"))
    assert run["state"] == "succeeded", run
    text = http.get(f"{API}/runs/{run['id']}/logs").text
    first, _, kept = text.partition("\n")
    assert first.startswith("[lakeport: the first ") and "bytes of this log were cut" in first
    assert kept.endswith("line 0399999\n") and len(kept) <= LOG_CAP
    assert len(kept) > LOG_CAP // 2  # the tail is kept, not only its last chunk
    cut = int(first.split()[3])
    assert cut + len(kept) == 400_000 * len("line 0000000\n")



