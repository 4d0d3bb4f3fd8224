"""The task service over HTTP, with the worker protocol spoken by hand: deploy, start, claim,
heartbeat, logs, outputs, finish; retries, lost workers, pause/stop commands, bad input and
who may do what. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from server_fixtures import Platform
from task_helpers import store_key, zip_bytes
from waiting import wait_until

API = "/api/v1/tasks"



def deploy(http: httpx.Client, project: str, task: str, spec: dict[str, Any],
           executable: tuple[str, bytes] | None = ("main.sh", b"echo hi\n"),
           overwrite: bool = False, **zips: bytes) -> httpx.Response:
    files: dict[str, Any] = {}
    if executable is not None:
        files["executable"] = executable
    for part, data in zips.items():
        files[part] = (f"{part}.zip", data)
    return http.put(f"{API}/projects/{project}/tasks/{task}",
                    params={"overwrite": overwrite} if overwrite else None,
                    data={"spec": json.dumps(spec)}, files=files or None)


def claim(worker: httpx.Client, runtimes: tuple[str, ...] = ("sh",), wait: float = 5
          ) -> dict[str, Any] | None:
    answer = worker.post(f"{API}/claim", json={"worker": "w1", "runtimes": list(runtimes),
                                                "wait": wait})
    assert answer.status_code in (200, 204), answer.text
    return answer.json()["attempts"][0] if answer.status_code == 200 else None


def finish(worker: httpx.Client, attempt: dict[str, Any], outcome: str = "succeeded",
           **extra: Any) -> httpx.Response:
    return worker.post(f"{API}/attempts/{attempt['id']}/finish",
                       json={"token": attempt["token"], "outcome": outcome, **extra})


@pytest.fixture
def http(platform: Platform) -> httpx.Client:
    with platform.client() as client:
        assert client.post(f"{API}/projects", json={"name": "plant"}).status_code == 201
        yield client


@pytest.fixture
def worker(platform: Platform) -> httpx.Client:
    with platform.client(store_key(platform.settings.store_url, "w1", worker=True)) as client:
        yield client


def test_a_run_goes_from_start_to_files_and_logs(platform: Platform, http: httpx.Client,
                                                 worker: httpx.Client) -> None:
    answer = deploy(http, "plant", "report", {"runtime": "sh", "args": ["a b"],
                                              "env": {"MODE": "x"}},
                    inputs=zip_bytes({"data.csv": b"1,2\n"}))
    assert answer.status_code == 201, answer.text
    assert answer.json()["version"] == 1 and answer.json()["executable"] == "main.sh"
    run = http.post(f"{API}/projects/plant/tasks/report/start",
                    json={"parameters": {"day": "1"}}).json()
    assert run["state"] == "queued" and run["parameters"] == {"day": "1"}
    assert "no worker offers runtime 'sh'" in run["waiting"]

    attempt = claim(worker)
    assert attempt is not None and attempt["run"] == run["id"] and attempt["number"] == 1
    assert attempt["entry"] == "main.sh" and attempt["args"] == ["a b"]
    assert attempt["env"] == {"MODE": "x"} and attempt["parts"] == ["executable", "inputs"]
    token = {"x-attempt-token": attempt["token"]}
    base = f"{API}/attempts/{attempt['id']}"
    assert worker.get(f"{base}/parts/executable", headers=token).content == b"echo hi\n"
    assert worker.get(f"{base}/parts/inputs").status_code == 410  # no token
    beat = worker.post(f"{base}/heartbeat", json={"token": attempt["token"], "pid": 42})
    assert beat.json() == {"command": "run"}
    assert worker.post(f"{base}/logs/stdout", params={"offset": 0}, content=b"hello ",
                       headers=token).json() == {"end": 6}
    # a retry of the same chunk is skipped, a gap is refused
    assert worker.post(f"{base}/logs/stdout", params={"offset": 0}, content=b"hello ",
                       headers=token).json() == {"end": 6}
    assert worker.post(f"{base}/logs/stdout", params={"offset": 9}, content=b"x",
                       headers=token).status_code == 409
    worker.post(f"{base}/logs/stdout", params={"offset": 6}, content=b"world\n", headers=token)
    assert worker.put(f"{base}/out/result.txt", content=b"42", headers=token).status_code == 201
    # the user sees the run running with its output so far, and follows it to the end
    assert http.get(f"{API}/runs/{run['id']}/logs").text == "hello world\n"
    with ThreadPoolExecutor(1) as pool:
        followed = pool.submit(lambda: http.get(
            f"{API}/runs/{run['id']}/logs", params={"follow": True},
            headers={"accept": "text/event-stream"}).text)
        worker.post(f"{base}/logs/stdout", params={"offset": 12}, content=b"bye",
                    headers=token)
        assert finish(worker, attempt, exit_code=0).json()["run"]["state"] == "succeeded"
        assert followed.result(timeout=30) == ("event: log\ndata: hello world\n\n"
                                               "event: log\ndata: bye\n\n"
                                               "event: end\ndata: \n\n")
    assert finish(worker, attempt, exit_code=0).status_code == 200  # applied once
    assert finish(worker, attempt, "failed").status_code == 409

    shown = http.get(f"{API}/runs/{run['id']}").json()
    assert shown["state"] == "succeeded"
    assert [e["state"] for e in shown["events"]] == ["queued", "running", "succeeded"]
    folder = f"tasks/plant/report/{run['id']}"
    assert http.get(f"/api/v1/files/{folder}/out/result.txt").content == b"42"
    assert wait_until(lambda: http.get(f"/api/v1/files/{folder}/attempt-1/stdout.log")
                      .status_code == 200), "the attempt's log filed in the lake"
    assert http.get(f"/api/v1/files/{folder}/attempt-1/stdout.log").text == "hello world\nbye"
    assert http.get(f"{API}/runs/{run['id']}/logs").text == "hello world\nbye"
    # another user sees none of it
    with platform.client("bob") as bob:
        assert bob.get(f"{API}/runs/{run['id']}").status_code == 404
        assert bob.get(f"/api/v1/files/{folder}/out/result.txt").status_code == 404
        assert bob.post(f"{API}/projects/plant/tasks/report/start").status_code == 404


def test_failed_attempts_are_retried_then_the_run_fails(http: httpx.Client,
                                                        worker: httpx.Client) -> None:
    deploy(http, "plant", "flaky", {"runtime": "sh", "retries": {"count": 1, "backoff": 0}})
    run = http.post(f"{API}/projects/plant/tasks/flaky/start").json()
    first = claim(worker)
    assert first is not None
    assert finish(worker, first, "failed", exit_code=3, reason="exit 3").json()["run"][
        "state"] == "queued"
    second = claim(worker)
    assert second is not None and second["number"] == 2 and second["run"] == run["id"]
    assert finish(worker, second, "failed", exit_code=3).json()["run"]["state"] == "failed"
    shown = http.get(f"{API}/runs/{run['id']}").json()
    assert [a["state"] for a in shown["attempt_list"]] == ["failed", "failed"]


def test_a_finish_claims_the_workers_next_runs(http: httpx.Client,
                                               worker: httpx.Client) -> None:
    deploy(http, "plant", "batch", {"runtime": "sh"})
    runs = [http.post(f"{API}/projects/plant/tasks/batch/start").json()["id"] for _ in range(3)]
    first = claim(worker)
    assert first is not None and first["run"] == runs[0]
    nexts = {"worker": "w1", "runtimes": ["sh"], "max": 5}
    answer = finish(worker, first, exit_code=0, claim=nexts).json()
    assert answer["run"]["state"] == "succeeded"
    assert [a["run"] for a in answer["attempts"]] == runs[1:]
    assert {a["number"] for a in answer["attempts"]} == {1}
    for attempt in answer["attempts"]:  # each is the worker's to run: heartbeat, finish
        assert finish(worker, attempt, exit_code=0, claim=nexts).json() == {
            "run": {"id": attempt["run"], "state": "succeeded"}, "attempts": []}
    # a finish that is refused claims nothing
    late = finish(worker, first, "failed", claim=nexts)
    assert late.status_code == 409
    assert http.post(f"{API}/projects/plant/tasks/batch/start").json()["state"] == "queued"


def test_a_claim_takes_the_oldest_runs_of_all_its_runtimes(http: httpx.Client,
                                                           worker: httpx.Client) -> None:
    deploy(http, "plant", "shell", {"runtime": "sh"})
    deploy(http, "plant", "script", {"runtime": "py"}, executable=("main.py", b""))
    order = [http.post(f"{API}/projects/plant/tasks/{task}/start").json()["id"]
             for task in ("shell", "script", "script", "shell", "script")]
    answer = worker.post(f"{API}/claim", json={"worker": "w1", "runtimes": ["sh", "py"],
                                                "wait": 0, "max": 3})
    assert [a["run"] for a in answer.json()["attempts"]] == order[:3]
    answer = worker.post(f"{API}/claim", json={"worker": "w1", "runtimes": ["py"], "wait": 0,
                                                "max": 5})
    assert [a["run"] for a in answer.json()["attempts"]] == [order[4]]


def test_a_run_whose_secret_is_missing_fails_and_the_claim_takes_the_next(
        http: httpx.Client, worker: httpx.Client) -> None:
    deploy(http, "plant", "locked", {"runtime": "sh",
                                     "env": {"TOKEN": "<% secrets.nowhere %>"}})
    deploy(http, "plant", "open", {"runtime": "sh"})
    locked = http.post(f"{API}/projects/plant/tasks/locked/start").json()["id"]
    opened = http.post(f"{API}/projects/plant/tasks/open/start").json()["id"]
    attempt = claim(worker)
    assert attempt is not None and attempt["run"] == opened
    run = http.get(f"{API}/runs/{locked}").json()
    assert run["state"] == "failed" and "environment variable TOKEN" in run["reason"]


def test_pause_and_stop_reach_the_worker_through_heartbeats(http: httpx.Client,
                                                            worker: httpx.Client) -> None:
    deploy(http, "plant", "long", {"runtime": "sh"})
    run = http.post(f"{API}/projects/plant/tasks/long/start").json()
    attempt = claim(worker)
    assert attempt is not None
    beat = f"{API}/attempts/{attempt['id']}/heartbeat"
    assert http.post(f"{API}/runs/{run['id']}/pause").status_code == 200
    assert worker.post(beat, json={"token": attempt["token"]}).json() == {"command": "pause"}
    worker.post(beat, json={"token": attempt["token"], "state": "paused"})
    assert http.get(f"{API}/runs/{run['id']}").json()["state"] == "paused"
    http.post(f"{API}/runs/{run['id']}/resume")
    assert worker.post(beat, json={"token": attempt["token"], "state": "running"}).json() == {
        "command": "run"}
    http.post(f"{API}/runs/{run['id']}/stop")
    assert worker.post(beat, json={"token": attempt["token"]}).json() == {"command": "stop"}
    assert finish(worker, attempt, "cancelled").json()["run"]["state"] == "cancelled"
    assert worker.post(beat, json={"token": attempt["token"]}).status_code == 410


def test_a_silent_worker_s_run_is_lost_and_retried(store_url: str, tmp_path: Any) -> None:
    from server_fixtures import platform_settings, running_platform

    settings = platform_settings(store_url, tmp_path / "quick", task_lost_after=1.0)
    with running_platform(settings) as quick, quick.client() as http, \
            quick.client(store_key(quick.settings.store_url, "w1", worker=True)) as worker:
        http.post(f"{API}/projects", json={"name": "plant"})
        deploy(http, "plant", "job", {"runtime": "sh", "retries": {"count": 1, "backoff": 0}})
        run = http.post(f"{API}/projects/plant/tasks/job/start").json()
        first = claim(worker)
        assert first is not None
        second = claim(worker, wait=15)  # the first attempt goes silent: lost, then retried
        assert second is not None and second["run"] == run["id"] and second["number"] == 2
        beat = worker.post(f"{API}/attempts/{first['id']}/heartbeat",
                           json={"token": first["token"]})
        assert beat.status_code == 410  # the old process is told to stop
        states = [a["state"] for a in http.get(f"{API}/runs/{run['id']}").json()[
            "attempt_list"]]
        assert states == ["lost", "running"]


def test_bad_deploys_are_one_line_errors(http: httpx.Client) -> None:
    cases = [
        ({"runtime": "cobol"}, {}, "unknown runtime 'cobol'"),
        ({"runtime": "sh", "entry": "other.sh"}, {}, "entry point 'other.sh' is not in the"),
        ({"runtime": "sh", "schedule": {"kind": "cron", "expression": "61 * * * *"}}, {},
         "schedule"),
        ({"runtime": "sh", "schedule": {"kind": "at", "at": "01-01-2020 10:00:00.000 IST"}},
         {}, "is in the past"),
        ({"runtime": "sh", "schedule": {"kind": "cron", "expression": "* * * * *",
                                         "timezone": "Mars/Base"}}, {}, "Mars/Base"),
        ({"runtime": "sh"}, {"dependencies": zip_bytes({"../evil": b"x"})}, "dependencies zip"),
        ({"runtime": "sh"}, {"inputs": b"not a zip"}, "input zip"),
        ({"runtime": "sh"}, {"inputs": zip_bytes({"zeros": bytes(50 << 20)})},
         "the input zip looks like a zip bomb"),
        ({"runtime": "sh", "nope": 1}, {}, "nope"),
    ]
    for spec, zips, message in cases:
        answer = deploy(http, "plant", "bad", spec, **zips)
        assert answer.status_code == 422, (spec, answer.text)
        assert message in answer.json()["error"]["message"], (message, answer.json())
    assert http.get(f"{API}/projects/plant/tasks").json()["items"] == []
    assert deploy(http, "plant", "ok", {"runtime": "sh"}).status_code == 201
    assert deploy(http, "plant", "ok", {"runtime": "sh"}).status_code == 409
    again = deploy(http, "plant", "ok", {"runtime": "sh"}, overwrite=True)
    assert again.status_code == 200 and again.json()["version"] == 2


def test_only_worker_keys_claim(platform: Platform, http: httpx.Client) -> None:
    answer = http.post(f"{API}/claim", json={"worker": "x", "runtimes": ["sh"], "wait": 0})
    assert answer.status_code == 403 and "--worker" in answer.json()["error"]["message"]
