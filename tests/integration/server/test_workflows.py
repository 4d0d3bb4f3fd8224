"""Workflows on a real server with its local worker, on SQLite and PostgreSQL: a chain whose
second task reads the first's output, branches that run in parallel and join, retries with
their attempts and logs, a failure that skips what follows and a recovery that reruns only
it, abort, pause and resume, an instance that keeps its code when its tasks are redeployed,
and the workflow's limit of active instances."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server_fixtures import STORES, Platform, platform_settings, postgres_database, running_platform
from waiting import wait_until

TASKS = "/api/v1/tasks"
API = "/api/v1/workflows"
ENDED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module", params=STORES)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Platform, httpx.Client]]:
    """One server with a local worker (4 slots) per store, for the module's tests (each with
    tasks and workflows of its own)."""
    folder = tmp_path_factory.mktemp("served")
    urls = iter([f"sqlite:///{folder / 'store.db'}"]) if request.param == "sqlite" \
        else postgres_database()
    store_url = next(urls)
    settings = platform_settings(store_url, folder, workers=1, worker_concurrency=4)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LAKEPORT_HOME", str(folder / "home"))
            with running_platform(settings) as platform, platform.client() as http:
                assert http.post(f"{TASKS}/projects", json={"name": "plant"}).status_code == 201
                yield platform, http
    finally:
        next(urls, None)  # drops the PostgreSQL database


def deploy(http: httpx.Client, task: str, script: str, **spec: Any) -> None:
    """A ``sh`` task of project plant running ``script``."""
    answer = http.put(f"{TASKS}/projects/plant/tasks/{task}", params={"overwrite": "true"},
                      data={"spec": json.dumps({"runtime": "sh", **spec})},
                      files={"executable": ("main.sh", script.encode())})
    assert answer.status_code in (200, 201), answer.text


def apply(http: httpx.Client, name: str, body: dict[str, Any], status: int = 201
          ) -> dict[str, Any]:
    answer = http.put(f"{API}/{name}", json=body)
    assert answer.status_code == status, answer.text
    return answer.json()


def run(http: httpx.Client, name: str, **parameters: str) -> dict[str, Any]:
    answer = http.post(f"{API}/{name}/instances", json={"parameters": parameters})
    assert answer.status_code == 201, answer.text
    return answer.json()


def status(http: httpx.Client, instance_id: int) -> dict[str, Any]:
    answer = http.get(f"{API}/instances/{instance_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def finished(http: httpx.Client, instance_id: int, timeout: float = 60) -> dict[str, Any]:
    assert wait_until(lambda: status(http, instance_id)["state"] in ENDED, timeout), \
        status(http, instance_id)
    return status(http, instance_id)


def nodes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["name"]: node for node in record["nodes"]}


def output(http: httpx.Client, node: dict[str, Any], file: str) -> str:
    folder = node["attempts"][-1]["outputs"]
    answer = http.get(f"/api/v1/files/{folder}/{file}")
    assert answer.status_code == 200, answer.text
    return answer.text


def test_the_seed_chain_passes_the_first_output_to_the_second(served: Any) -> None:
    _, http = served
    deploy(http, "t1", 'echo "made by $LAKEPORT_PARAM_DAY" > "$LAKEPORT_TASK_OUT/out.out"\n')
    deploy(http, "t2", 'tr a-z A-Z < "$LAKEPORT_TASK_IN/out.out" > "$LAKEPORT_TASK_OUT/r.txt"\n')
    linked = http.put(f"{TASKS}/projects/plant/tasks/t2/links",
                      json={"links": [{"project": "plant", "task": "t1", "file": "out.out"}]})
    assert linked.status_code == 200, linked.text
    created = apply(http, "seed", {"project": "plant", "edges": [["t1", "t2"]]})
    assert [(n["name"], n["after"]) for n in created["nodes"]] == [("t1", []), ("t2", ["t1"])]
    created_again = apply(http, "seed", {"project": "plant", "edges": [["t1", "t2"]]}, 200)
    assert created_again["version"] == 1
    plain = finished(http, run(http, "seed")["id"])
    assert plain["state"] == "succeeded", plain
    assert output(http, nodes(plain)["t2"], "r.txt") == "MADE BY \n"
    # the seed's tasks take no parameters: a workflow that declares one passes it to each
    apply(http, "seed", {"project": "plant", "parameters": ["day"],
                         "nodes": [{"name": "t1", "task": "t1"},
                                   {"name": "t2", "task": "t2", "after": ["t1"]}]})
    one = finished(http, run(http, "seed", day="monday")["id"])
    two = finished(http, run(http, "seed", day="tuesday")["id"])
    for record, day in ((one, "MONDAY"), (two, "TUESDAY")):
        assert record["state"] == "succeeded", record
        assert record["version"] == 2
        assert output(http, nodes(record)["t2"], "r.txt") == f"MADE BY {day}\n"
    assert [n["state"] for n in one["nodes"]] == ["succeeded", "succeeded"]
    history = http.get(f"{API}/seed/instances").json()["items"]
    assert [(i["id"], i["state"], i["parameters"]) for i in history] == [
        (two["id"], "succeeded", {"day": "tuesday"}), (one["id"], "succeeded", {"day": "monday"}),
        (plain["id"], "succeeded", {})]
    mapping = http.get(f"{API}/instances/{one['id']}/mapping").json()["items"]
    assert mapping == [{"node": "t1", "task": "plant/t1", "version": 1,
                        "copy": f"plant/t1@{one['id']}"},
                       {"node": "t2", "task": "plant/t2", "version": 1,
                        "copy": f"plant/t2@{one['id']}"}]
    listed = http.get(f"{TASKS}/projects/plant/tasks").json()["items"]
    assert "t1@" not in json.dumps(listed)  # the copies are the instances', not the project's
    events = http.get(f"{API}/instances/{one['id']}/events").json()["items"]
    transitions = [(e["node"], e["state"]) for e in events]
    assert transitions[0] == (None, "queued") and transitions[-1] == (None, "succeeded")
    assert transitions.index(("t1", "succeeded")) < transitions.index(("t2", "queued"))


def test_parallel_branches_join_with_their_files(served: Any) -> None:
    _, http = served
    deploy(http, "split", 'echo 5 > "$LAKEPORT_TASK_OUT/n"\n')
    deploy(http, "times", 'echo $(( $(cat "$LAKEPORT_TASK_IN/n") * $LAKEPORT_PARAM_K )) '
                          '> "$LAKEPORT_TASK_OUT/r"\n')
    deploy(http, "join", 'cat "$LAKEPORT_TASK_IN/a" "$LAKEPORT_TASK_IN/b" "$LAKEPORT_TASK_IN/c"'
                         ' | paste -sd+ | bc > "$LAKEPORT_TASK_OUT/sum"\n')
    branches = [{"name": name, "task": "times", "after": ["split"], "parameters": {"k": k},
                 "inputs": [{"from": "split", "file": "n"}]}
                for name, k in (("a", "2"), ("b", "3"), ("c", "4"))]
    apply(http, "fan", {"project": "plant", "nodes": [
        {"name": "split", "task": "split"}, *branches,
        {"name": "join", "task": "join", "after": ["a", "b", "c"],
         "inputs": [{"from": name, "file": "r", "as": name} for name in "abc"]}]})
    record = finished(http, run(http, "fan")["id"])
    assert record["state"] == "succeeded", record
    assert output(http, nodes(record)["join"], "sum") == f"{5 * 2 + 5 * 3 + 5 * 4}\n"
    starts = sorted(nodes(record)[name]["attempts"][0]["started"] for name in "abc")
    ends = sorted(nodes(record)[name]["attempts"][0]["ended"] for name in "abc")
    assert starts[-1] < ends[0], "the branches ran one after the other, not in parallel"


def test_retries_keep_every_attempt_and_a_failure_skips_what_follows(
        served: Any, tmp_path: Path) -> None:
    _, http = served
    tries = tmp_path / "tries"
    deploy(http, "flaky", f'echo try >> {tries}\necho "attempt $(wc -l < {tries})"\n'
                          f'[ "$(wc -l < {tries})" -ge 3 ]\n')
    deploy(http, "ok", "echo fine\n")
    apply(http, "retrying", {"project": "plant", "nodes": [
        {"name": "flaky", "task": "flaky", "retries": {"count": 2, "backoff": 0}},
        {"name": "after", "task": "ok", "after": ["flaky"]}]})
    record = finished(http, run(http, "retrying")["id"])
    assert record["state"] == "succeeded", record
    attempts = nodes(record)["flaky"]["attempts"]
    assert [a["state"] for a in attempts] == ["failed", "failed", "succeeded"]
    logs = [http.get(attempt["logs"]).text for attempt in attempts]
    assert logs == ["attempt 1\n", "attempt 2\n", "attempt 3\n"]

    flag = tmp_path / "fixed"
    deploy(http, "bad", f"[ -e {flag} ] && echo fixed && exit 0\necho broken >&2\nexit 3\n")
    apply(http, "failing", {"project": "plant", "nodes": [
        {"name": "first", "task": "ok"},
        {"name": "bad", "task": "bad", "after": ["first"]},
        {"name": "side", "task": "ok", "after": ["first"]},
        {"name": "then", "task": "ok", "after": ["bad"]},
        {"name": "last", "task": "ok", "after": ["then", "side"]}]})
    failed = finished(http, run(http, "failing")["id"])
    assert failed["state"] == "failed"
    assert {n["name"]: n["state"] for n in failed["nodes"]} == {
        "first": "succeeded", "bad": "failed", "side": "succeeded", "then": "skipped",
        "last": "skipped"}
    assert nodes(failed)["bad"]["attempts"][0]["exit_code"] == 3
    assert "broken" in http.get(nodes(failed)["bad"]["attempts"][0]["logs"],
                                params={"stream": "stderr"}).text
    flag.touch()
    answer = http.post(f"{API}/instances/{failed['id']}/recover", json={})
    assert answer.status_code == 200, answer.text
    recovered = finished(http, failed["id"])
    assert recovered["state"] == "succeeded" and recovered["recoveries"] == 1
    runs = {n["name"]: [a["run"] for a in n["attempts"]] for n in recovered["nodes"]}
    before = {n["name"]: [a["run"] for a in n["attempts"]] for n in failed["nodes"]}
    assert runs["first"] == before["first"] and runs["side"] == before["side"]  # kept
    assert len(runs["bad"]) == 2 and len(runs["then"]) == len(runs["last"]) == 1
    again = http.post(f"{API}/instances/{failed['id']}/recover", json={})
    assert again.status_code == 409 and "nothing failed" in again.json()["error"]["message"]
    partial = http.post(f"{API}/instances/{failed['id']}/recover", json={"from_node": "then"})
    assert partial.status_code == 200, partial.text
    rerun = finished(http, failed["id"])
    runs_now = {n["name"]: [a["run"] for a in n["attempts"]] for n in rerun["nodes"]}
    assert [len(runs_now[name]) for name in ("first", "bad", "side", "then", "last")] == \
        [1, 2, 1, 2, 2]
