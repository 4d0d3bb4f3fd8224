"""Workflow triggers on a real server with its local worker, on SQLite and PostgreSQL: a file
landing under the trigger's pattern starts one instance with its path, never twice for the
same file, not even across a server restart; a cron trigger fires once per slot up to its
limit; a topic trigger starts one instance per matching message, once, across a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from server_fixtures import Platform, platform_settings, running_platform
from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
TASKS = "/api/v1/tasks"
API = "/api/v1/workflows"


@contextmanager
def serving(store_url: str, folder: Path, key: str | None = None
            ) -> Iterator[tuple[Platform, httpx.Client]]:
    """The server on ``store_url`` with a local worker; alice's client (``key`` when the
    server runs again on the same store)."""
    settings = platform_settings(store_url, folder, workers=1, worker_concurrency=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAKEPORT_HOME", str(folder / "home"))
        with running_platform(settings) as platform:
            if key is not None:
                platform.api_key = key
            with platform.client() as http:
                yield platform, http


def setup_task(http: httpx.Client) -> None:
    """Project plant with task ``echo``: its out/got holds the instance's parameters."""
    assert http.post(f"{TASKS}/projects", json={"name": "plant"}).status_code == 201
    script = 'env | grep ^LAKEPORT_PARAM_ | sort > "$LAKEPORT_TASK_OUT/got"\n'
    answer = http.put(f"{TASKS}/projects/plant/tasks/echo",
                      data={"spec": json.dumps({"runtime": "sh"})},
                      files={"executable": ("main.sh", script.encode())})
    assert answer.status_code == 201, answer.text


def history(http: httpx.Client, name: str) -> list[dict[str, Any]]:
    answer = http.get(f"{API}/{name}/instances")
    assert answer.status_code == 200, answer.text
    return list(reversed(answer.json()["items"]))


def all_ended(http: httpx.Client, name: str, count: int) -> bool:
    found = history(http, name)
    return len(found) == count and all(item["state"] == "succeeded" for item in found)


def quiet_tick(platform: Platform) -> None:
    """Wait for two more ticks of the leading server's scheduler (what was due has fired)."""
    scheduler = platform.app.state.tasks_scheduler
    seen = [0]

    async def count() -> None:
        seen[0] += 1

    scheduler.jobs.append(count)
    try:
        assert wait_until(lambda: seen[0] >= 2, 10), "the scheduler does not tick"
    finally:
        scheduler.jobs.remove(count)


def test_a_file_landing_starts_one_instance_even_across_a_restart(
        store_url: str, tmp_path: Path) -> None:
    flow = {"project": "plant", "parameters": ["path"],
            "nodes": [{"name": "echo", "task": "echo"}],
            "triggers": [{"kind": "files", "path": "exports/line1/*.parquet"}]}
    with serving(store_url, tmp_path) as (platform, http):
        key = platform.api_key
        setup_task(http)
        assert http.put("/api/v1/files/exports/line1/old.parquet", content=b"1").status_code == 201
        assert http.put(f"{API}/landing", json=flow).status_code == 201
        for path in ("exports/line1/a.parquet", "exports/line2/b.parquet",
                     "exports/line1/sub/c.parquet", "exports/line1/d.csv"):
            assert http.put(f"/api/v1/files/{path}", content=b"x").status_code == 201
        assert wait_until(lambda: all_ended(http, "landing", 1), 60), history(http, "landing")
        again = http.put("/api/v1/files/exports/line1/a.parquet", content=b"y",
                         params={"overwrite": "true"})
        assert again.status_code in (200, 201), again.text
        quiet_tick(platform)
        first = history(http, "landing")
        assert [(item["trigger"], item["parameters"]) for item in first] == [
            ("files", {"path": "exports/line1/a.parquet"})]
        record = http.get(f"{API}/instances/{first[0]['id']}").json()
        got = http.get(f"/api/v1/files/{record['nodes'][0]['attempts'][0]['outputs']}/got")
        assert got.text == "LAKEPORT_PARAM_PATH=exports/line1/a.parquet\n"
    with serving(store_url, tmp_path, key) as (platform, http):
        quiet_tick(platform)
        assert len(history(http, "landing")) == 1  # the restart fires nothing again
        assert http.put("/api/v1/files/exports/line1/e.parquet", content=b"z").status_code == 201
        assert wait_until(lambda: all_ended(http, "landing", 2), 60), history(http, "landing")
        quiet_tick(platform)
        assert [item["parameters"]["path"] for item in history(http, "landing")] == [
            "exports/line1/a.parquet", "exports/line1/e.parquet"]


def test_cron_fires_once_per_slot_up_to_its_limit(store_url: str, tmp_path: Path) -> None:
    flow = {"project": "plant", "parameters": ["slot", "site"],
            "nodes": [{"name": "echo", "task": "echo"}],
            "triggers": [{"kind": "cron", "expression": "* * * * * *", "limit": 2,
                          "parameters": {"site": "north"}}]}
    with serving(store_url, tmp_path) as (platform, http):
        setup_task(http)
        assert http.put(f"{API}/ticking", json=flow).status_code == 201
        assert wait_until(lambda: all_ended(http, "ticking", 2), 60), history(http, "ticking")
        quiet_tick(platform)
        quiet_tick(platform)
        found = history(http, "ticking")
        assert len(found) == 2 and {item["trigger"] for item in found} == {"cron"}
        slots = [item["parameters"]["slot"] for item in found]
        assert slots == sorted(set(slots)) and all(
            item["parameters"]["site"] == "north" for item in found)


def test_a_topic_message_that_matches_starts_one_instance(store_url: str,
                                                          tmp_path: Path) -> None:
    flow = {"project": "plant", "parameters": ["seqno", "message"],
            "nodes": [{"name": "echo", "task": "echo"}],
            "triggers": [{"kind": "topic", "topic": "alarms", "where": {"meta.site": "a"}}]}
    with serving(store_url, tmp_path) as (platform, http):
        key = platform.api_key
        setup_task(http)
        missing = http.put(f"{API}/alarmed", json=flow)
        assert missing.status_code == 404, missing.text
        assert "trigger 1 (topic)" in missing.json()["error"]["message"]
        assert http.put("/api/v1/topics/alarms").status_code == 201
        early = http.post("/api/v1/topics/alarms/messages",
                          json={"payload": {"meta": {"site": "a"}, "n": 0}})
        assert early.status_code == 200, early.text
        assert http.put(f"{API}/alarmed", json=flow).status_code == 201
        for n, site in enumerate(("a", "b", "a"), 1):
            sent = http.post("/api/v1/topics/alarms/messages",
                             json={"payload": {"meta": {"site": site}, "n": n}})
            assert sent.status_code == 200, sent.text
        assert wait_until(lambda: all_ended(http, "alarmed", 2), 60), history(http, "alarmed")
        quiet_tick(platform)
    with serving(store_url, tmp_path, key) as (platform, http):
        quiet_tick(platform)
        found = history(http, "alarmed")
        assert [json.loads(item["parameters"]["message"])["n"] for item in found] == [1, 3]
        assert [item["parameters"]["seqno"] for item in found] == ["2", "4"]
