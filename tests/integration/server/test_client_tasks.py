"""``client.tasks`` against a real server (SQLite), a worker simulated by hand with a worker
key: deploy with a bundle and progress, start with parameters, logs (followed while the run
prints), wait, run history in pages, pause/resume/stop, reschedule, copy, links, typed
errors, and the blocking client doing the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lakeport.client import Client, SyncClient
from lakeport.errors import Conflict, Invalid, NotFound
from lakeport.tasks import At, Cron
from server_fixtures import Platform
from task_helpers import zip_file

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
API = "/api/v1/tasks"



@pytest.fixture
def keys(platform: Platform) -> dict[str, str]:
    """Keys of alice, bob and a worker (made before the test's event loop runs)."""
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key

    async def worker() -> str:
        async with Store(platform.settings.store_url) as store:
            return await create_key(store, "w1", worker=True)

    return {"alice": platform.api_key, "bob": platform.key_for("bob"),
            "worker": asyncio.run(worker())}


@pytest.fixture
async def worker(platform: Platform, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.url, timeout=30,
                                 headers={"x-api-key": keys["worker"]}) as client:
        yield client


async def claim(worker: httpx.AsyncClient) -> dict[str, Any]:
    answer = await worker.post(f"{API}/claim", json={"worker": "w1", "runtimes": ["sh"],
                                                     "wait": 5})
    assert answer.status_code == 200, answer.text
    return answer.json()["attempts"][0]


async def finish(worker: httpx.AsyncClient, attempt: dict[str, Any],
                 outcome: str = "succeeded") -> None:
    answer = await worker.post(f"{API}/attempts/{attempt['id']}/finish",
                               json={"token": attempt["token"], "outcome": outcome,
                                     "exit_code": 0 if outcome == "succeeded" else 1})
    assert answer.status_code == 200, answer.text


async def print_(worker: httpx.AsyncClient, attempt: dict[str, Any], offset: int,
                 data: bytes) -> None:
    answer = await worker.post(f"{API}/attempts/{attempt['id']}/logs/stdout",
                               params={"offset": offset}, content=data,
                               headers={"x-attempt-token": attempt["token"]})
    assert answer.status_code == 200, answer.text


async def test_deploy_start_follow_and_wait(platform: Platform, keys: dict[str, str],
                                            worker: httpx.AsyncClient, tmp_path: Path) -> None:
    main = tmp_path / "main.sh"
    main.write_bytes(b"echo hi\n" * 20_000)
    deps = zip_file(tmp_path / "deps.zip", {"lib.sh": b"x=1\n"})
    inputs = zip_file(tmp_path / "in.zip", {"data.csv": b"1,2\n"})
    progress: list[tuple[int, int]] = []
    async with Client(platform.url, keys["alice"]) as client:
        project = await client.tasks.create_project("plant", "the plant's jobs")
        assert project["name"] == "plant" and project["owner"] == "alice"
        with pytest.raises(Conflict, match="exists"):
            await client.tasks.create_project("plant")
        task = await client.tasks.deploy(
            "plant", "report", runtime="sh", executable=main, dependencies=deps,
            inputs=str(inputs), args=["a b"], env={"MODE": "x"}, timeout="30s", retries=2,
            memory_mb=256, on_progress=lambda sent, total: progress.append((sent, total)))
        total = sum(path.stat().st_size for path in (main, deps, inputs))
        assert progress[-1] == (total, total) and len(progress) > 2
        assert task["version"] == 1 and task["executable"] == "main.sh"
        assert task["spec"]["timeout"] == 30 and task["spec"]["retries"]["count"] == 2
        assert task["spec"]["memory_mb"] == 256 and task["spec"]["args"] == ["a b"]
        with pytest.raises(Conflict, match="overwrite"):
            await client.tasks.deploy("plant", "report", runtime="sh", executable=main)
        again = await client.tasks.deploy("plant", "report", runtime="sh", executable=main,
                                          overwrite=True, retries={"count": 1, "backoff": 0})
        assert again["version"] == 2 and (await client.tasks.task("plant", "report"))[
            "spec"]["retries"]["backoff"] == 0
        assert "report" in await client.tasks.tasks("plant", format="table")
        assert "plant" in await client.tasks.projects(format="table")

        run = await client.tasks.start("plant", "report", {"day": 1})
        assert run["state"] == "queued" and run["parameters"] == {"day": "1"}
        assert "no worker offers runtime 'sh'" in run["waiting"]
        follower = asyncio.create_task(_collect(client.tasks.logs(run["id"], follow=True)))
        attempt = await claim(worker)
        assert attempt["run"] == run["id"] and attempt["parameters"] == {"day": "1"}
        assert set(attempt["parts"]) == {"executable", "dependencies", "inputs"}  # kept
        await print_(worker, attempt, 0, b"hello ")
        assert b"".join([c async for c in client.tasks.logs(run["id"])]) == b"hello "
        await print_(worker, attempt, 6, b"world\n")
        with pytest.raises(TimeoutError, match=f"run {run['id']} is still running"):
            await client.tasks.wait(run["id"], timeout=0.3, poll=0.05)
        await finish(worker, attempt)
        final = await client.tasks.wait(run["id"], timeout=10)
        assert final["state"] == "succeeded"
        assert await asyncio.wait_for(follower, 10) == b"hello world\n"
        shown = await client.tasks.run(run["id"])
        assert [a["state"] for a in shown["attempt_list"]] == ["succeeded"]
        assert [e["state"] for e in shown["events"]] == ["queued", "running", "succeeded"]

        # history: more runs than a page, a state filter, a limit, stop of a queued run
        ids = [(await client.tasks.start("plant", "report"))["id"] for _ in range(3)]
        stopped = await client.tasks.stop(ids[0])
        assert stopped["state"] == "cancelled"
        history = await client.tasks.runs("plant", "report")
        assert [r["id"] for r in history] == [*reversed(ids), run["id"]]
        assert [r["id"] for r in await client.tasks.runs("plant", "report", limit=2)] == \
            ids[:0:-1]
        assert [r["id"] for r in await client.tasks.runs(
            "plant", "report", state=["succeeded", "cancelled"])] == [ids[0], run["id"]]
        table = await client.tasks.runs("plant", "report", state="queued", format="table")
        assert "queued" in table and "succeeded" not in table


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def test_control_schedules_copies_links_and_errors(platform: Platform,
                                                         keys: dict[str, str],
                                                         tmp_path: Path) -> None:
    main = tmp_path / "main.sh"
    main.write_bytes(b"echo hi\n")
    async with Client(platform.url, keys["alice"]) as client, \
            Client(platform.url, keys["bob"]) as bob:
        await client.tasks.create_project("plant")
        await client.tasks.create_project("lab")
        await client.tasks.deploy("plant", "source", runtime="sh", executable=main)
        at = datetime.now(UTC) + timedelta(hours=1)
        task = await client.tasks.deploy("plant", "job", runtime="sh", executable=main,
                                         schedule=At(at=at))
        assert task["spec"]["schedule"]["kind"] == "at" and task["next_run"] is not None
        cron = Cron(expression="0 3 * * *", timezone="Europe/Berlin", limit=3)
        task = await client.tasks.reschedule("plant", "job", cron)
        assert task["spec"]["schedule"]["expression"] == "0 3 * * *"
        task = await client.tasks.reschedule("plant", "job", {"kind": "now"})
        assert task["next_run"] is None

        run = await client.tasks.start("plant", "job")
        assert (await client.tasks.pause(run["id"]))["state"] == "paused"
        assert (await client.tasks.resume(run["id"]))["state"] == "queued"
        assert (await client.tasks.stop(run["id"]))["state"] == "cancelled"
        with pytest.raises(Conflict, match="has ended"):
            await client.tasks.pause(run["id"])

        links = await client.tasks.link_files("plant", "job", [
            ("plant", "source", "result.csv"), {"project": "plant", "task": "source",
                                                "file": "model.bin"}])
        assert [link["file"] for link in links] == ["result.csv", "model.bin"]
        assert await client.tasks.links("plant", "job") == links
        copy = await client.tasks.copy("plant", "job", "job2", to_project="lab")
        assert copy["project"] == "lab" and copy["links"] == links
        assert copy["executable"] == "main.sh"
        with pytest.raises(Invalid, match="bad link"):
            await client.tasks.link_files("plant", "job", [("plant", "source")])  # type: ignore[list-item]

        with pytest.raises(Invalid, match="unknown runtime 'cobol'"):
            await client.tasks.deploy("plant", "bad", runtime="cobol", executable=main)
        with pytest.raises(Invalid, match="no such file"):
            await client.tasks.deploy("plant", "bad", runtime="sh",
                                      executable=tmp_path / "missing.sh")
        with pytest.raises(Invalid, match="is in the past"):
            await client.tasks.deploy("plant", "bad", runtime="sh", executable=main,
                                      schedule={"kind": "at", "at": "2020-01-01T00:00:00Z"})
        with pytest.raises(NotFound):
            await bob.tasks.start("plant", "job")
        with pytest.raises(NotFound):
            await bob.tasks.run(run["id"])
        assert await bob.tasks.projects() == []

        await client.tasks.delete("lab", "job2")
        assert await client.tasks.tasks("lab") == []
        await client.tasks.delete_project("plant")
        assert [p["name"] for p in await client.tasks.projects()] == ["lab"]


def test_the_blocking_client_has_the_same_methods(platform: Platform, keys: dict[str, str],
                                                  tmp_path: Path) -> None:
    main = tmp_path / "main.sh"
    main.write_bytes(b"echo hi\n")
    with SyncClient(platform.url, keys["alice"]) as client:
        client.tasks.create_project("plant")
        client.tasks.deploy("plant", "job", runtime="sh", executable=main)
        run = client.tasks.start("plant", "job", {"x": "1"})
        assert client.tasks.run(run["id"])["parameters"] == {"x": "1"}
        assert list(client.tasks.logs(run["id"])) == []
        frame = client.tasks.runs("plant", "job", format="dataframe")
        assert list(frame["id"]) == [run["id"]] and str(frame["created"].dtype).startswith(
            "datetime64")
