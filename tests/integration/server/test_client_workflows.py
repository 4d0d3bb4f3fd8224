"""Workflows through ``lakeport.client`` as the seed's users write them, on SQLite and
PostgreSQL with the server's local worker: two ``py`` tasks, the second reading ``out.out``
of the first, combined with ``[(t1, t2)]``, run, with their status and history; three
parallel branches joining into one node; pause and resume, abort, the code an instance keeps
when its tasks are redeployed, the workflow's limit of active instances, a task's
concurrency limit, and each bad input as one typed error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_workflows import served  # noqa: F401  (the module's server, per store)

from lakeport.client import SyncClient
from lakeport.errors import Conflict, Invalid, NotFound
from server_fixtures import Platform
from waiting import wait_until

T1 = b"""import os
out = os.environ["LAKEPORT_TASK_OUT"]
open(os.path.join(out, "out.out"), "w").write("21")
"""
T2 = b"""import os
value = int(open(os.path.join(os.environ["LAKEPORT_TASK_IN"], "out.out")).read())
open(os.path.join(os.environ["LAKEPORT_TASK_OUT"], "answer.txt"), "w").write(str(value * 2))
print("the answer is", value * 2)
"""


@pytest.fixture
def client(served: tuple[Platform, httpx.Client]) -> Iterator[SyncClient]:  # noqa: F811
    platform, _ = served
    with SyncClient(platform.url, platform.api_key) as made:
        yield made


def deploy_py(client: SyncClient, tmp_path: Path, task: str, code: bytes) -> None:
    main = tmp_path / f"{task}.py"
    main.write_bytes(code)
    client.tasks.deploy("plant", task, runtime="py", executable=main, overwrite=True)


def node_states(record: dict[str, Any]) -> dict[str, str]:
    return {node["name"]: node["state"] for node in record["nodes"]}


def read_output(client: SyncClient, node: dict[str, Any], name: str) -> str:
    folder = node["attempts"][-1]["outputs"]
    return client.datalake.get(f"{folder}/{name}").decode()


def test_the_seed_example_through_the_client(client: SyncClient, tmp_path: Path) -> None:
    deploy_py(client, tmp_path, "seed1", T1)
    deploy_py(client, tmp_path, "seed2", T2)
    client.tasks.link_files("plant", "seed2", [("plant", "seed1", "out.out")])
    created = client.workflows.create(edges=[("seed1", "seed2")], name="seedflow",
                                      version=1, project="plant")
    assert created["change"] == "created" and created["version"] == 1
    instance = client.workflows.run("seedflow")
    final = client.workflows.wait(instance["id"], timeout=120)
    assert final["state"] == "succeeded", final
    assert node_states(final) == {"seed1": "succeeded", "seed2": "succeeded"}
    second = {node["name"]: node for node in final["nodes"]}["seed2"]
    assert read_output(client, second, "answer.txt") == "42"
    logs = b"".join(client.tasks.logs(second["attempts"][0]["run"])).decode()
    assert logs == "the answer is 42\n"
    history = client.workflows.history("seedflow")
    assert [(item["id"], item["state"]) for item in history] == [(instance["id"], "succeeded")]
    assert [row["node"] for row in client.workflows.mapping(instance["id"])] == ["seed1",
                                                                                 "seed2"]

    deploy_py(client, tmp_path, "joiner", b"""import os
inputs = os.environ["LAKEPORT_TASK_IN"]
total = sum(int(open(os.path.join(inputs, f"a{n}.txt")).read()) for n in range(3))
open(os.path.join(os.environ["LAKEPORT_TASK_OUT"], "sum.txt"), "w").write(str(total))
""")
    client.workflows.create(name="branches", project="plant", nodes=[
        {"name": "source", "task": "seed1"},
        *({"name": f"double{n}", "task": "seed2", "after": ["source"],
           "inputs": [{"from": "source", "file": "out.out"}]} for n in range(3)),
        {"name": "join", "task": "joiner", "after": ["double0", "double1", "double2"],
         "inputs": [{"from": f"double{n}", "file": "answer.txt", "as": f"a{n}.txt"}
                    for n in range(3)]}])
    joined = client.workflows.wait(client.workflows.run("branches")["id"], timeout=120)
    assert joined["state"] == "succeeded", joined
    join = {node["name"]: node for node in joined["nodes"]}["join"]
    assert read_output(client, join, "sum.txt") == "126"


def test_pause_resume_abort_and_the_code_an_instance_keeps(client: SyncClient,
                                                           tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    deploy_py(client, tmp_path, "gated", f"""import os, time
while not os.path.exists({str(gate)!r}):
    time.sleep(0.05)
""".encode())
    deploy_py(client, tmp_path, "says", b"""import os
open(os.path.join(os.environ["LAKEPORT_TASK_OUT"], "said"), "w").write("old")
""")
    client.workflows.create(edges=[("gated", "says")], name="held", project="plant")
    first = client.workflows.run("held")["id"]
    assert wait_until(lambda: node_states(client.workflows.status(first))["gated"]
                      == "running", 60)
    paused = client.workflows.pause(first)
    assert paused["paused"] is True
    deploy_py(client, tmp_path, "says", b"""import os
open(os.path.join(os.environ["LAKEPORT_TASK_OUT"], "said"), "w").write("new")
""")
    gate.touch()
    assert wait_until(lambda: client.workflows.status(first)["state"] == "paused", 60)
    assert node_states(client.workflows.status(first)) == {"gated": "succeeded",
                                                           "says": "pending"}
    client.workflows.resume(first)
    done = client.workflows.wait(first, timeout=120)
    says = {node["name"]: node for node in done["nodes"]}["says"]
    assert done["state"] == "succeeded" and read_output(client, says, "said") == "old"
    with pytest.raises(Conflict, match="has ended"):
        client.workflows.abort(first)
    with pytest.raises(Conflict, match="has ended"):
        client.workflows.pause(first)

    gate.unlink()
    second = client.workflows.run("held")["id"]
    assert wait_until(lambda: node_states(client.workflows.status(second))["gated"]
                      == "running", 60)
    aborted = client.workflows.abort(second)
    assert aborted["state"] == "cancelled"
    assert node_states(aborted) == {"gated": "cancelled", "says": "cancelled"}
    run_id = {node["name"]: node for node in aborted["nodes"]}["gated"]["run"]
    assert wait_until(lambda: client.tasks.run(run_id)["state"] == "cancelled", 60)
    gate.touch()


def test_limits_of_active_instances_and_of_a_task(client: SyncClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    deploy_py(client, tmp_path, "waits", f"""import os, time
while not os.path.exists({str(gate)!r}):
    time.sleep(0.05)
""".encode())
    deploy_py(client, tmp_path, "waits2", f"""import os, time
while not os.path.exists({str(gate)!r}):
    time.sleep(0.05)
""".encode())
    client.workflows.create(name="one-at-a-time", project="plant", max_active_instances=1,
                            nodes=[{"name": "w", "task": "waits2"}])
    first = client.workflows.run("one-at-a-time")
    second = client.workflows.run("one-at-a-time")
    assert (first["state"], second["state"]) == ("running", "queued")
    client.workflows.create(name="limited", project="plant", max_active_instances=10,
                            nodes=[{"name": f"w{n}", "task": "waits", "concurrency": 2}
                                   for n in range(4)])
    limited = client.workflows.run("limited")["id"]
    assert wait_until(lambda: client.workflows.status(limited)["counts"].get("running") == 2,
                      60)
    assert client.workflows.status(limited)["counts"]["pending"] == 2
    other = client.workflows.run("limited")["id"]  # the limit is the task's, over instances
    assert client.workflows.status(other)["counts"] == {"pending": 4}
    assert client.workflows.status(second["id"])["state"] == "queued"
    gate.touch()
    for instance in (first["id"], second["id"], limited, other):
        assert client.workflows.wait(instance, timeout=120)["state"] == "succeeded"


def test_bad_input_is_one_typed_error(client: SyncClient, tmp_path: Path) -> None:
    deploy_py(client, tmp_path, "plain", b"pass\n")
    with pytest.raises(Invalid, match="cycle"):
        client.workflows.create(edges=[("plain", "x"), ("x", "plain")], name="c",
                                project="plant")
    with pytest.raises(Invalid, match="runs after 'ghost', which is not a node"):
        client.workflows.create(name="d", project="plant",
                                nodes=[{"name": "a", "task": "plain", "after": ["ghost"]}])
    with pytest.raises(Invalid, match="node 'a' runs task 'plant/nothere', which does not"):
        client.workflows.create(name="u", project="plant",
                                nodes=[{"name": "a", "task": "nothere"}])
    with pytest.raises(Invalid, match="does not run before it"):
        client.workflows.create(name="l", project="plant", nodes=[
            {"name": "a", "task": "plain"},
            {"name": "b", "task": "plain", "inputs": [{"from": "a", "file": "x"}]}])
    with pytest.raises(Invalid, match="does not declare"):
        client.workflows.create(name="p", project="plant", nodes=[
            {"name": "a", "task": "plain", "parameters": {"x": "{{ day }}"}}])
    client.workflows.create(name="params", project="plant", parameters=["day"],
                            nodes=[{"name": "a", "task": "plain"}])
    with pytest.raises(Invalid, match="has no parameter 'hour'"):
        client.workflows.run("params", {"day": "1", "hour": "2"})
    with pytest.raises(Invalid, match="needs parameter 'day'"):
        client.workflows.run("params")
    with pytest.raises(NotFound, match="unknown workflow 'nope'"):
        client.workflows.run("nope")
    with pytest.raises(Conflict, match="apply version 2 or more"):
        client.workflows.create(name="params", project="plant", version=1,
                                nodes=[{"name": "b", "task": "plain"}])
    running = client.workflows.run("params", {"day": "1"})
    with pytest.raises(Conflict, match="recover an instance once it has failed"):
        client.workflows.recover(running["id"])
    done = client.workflows.wait(running["id"], timeout=120)
    assert done["state"] == "succeeded"
    with pytest.raises(Conflict, match="nothing failed to recover"):
        client.workflows.recover(running["id"])
    with pytest.raises(Conflict, match="has ended"):
        client.workflows.abort(running["id"])
    with pytest.raises(Invalid, match="has no node 'ghost'"):
        client.workflows.recover(running["id"], from_node="ghost")


def test_the_async_client_runs_a_workflow(served: tuple[Platform, httpx.Client],  # noqa: F811
                                          client: SyncClient, tmp_path: Path) -> None:
    from lakeport.client import Client

    platform, _ = served
    deploy_py(client, tmp_path, "plain", b"pass\n")

    async def scenario() -> str:
        async with Client(platform.url, platform.api_key) as client:
            await client.workflows.create(name="async-one", project="plant",
                                          nodes=[{"name": "a", "task": "plain"}])
            made = await client.workflows.run("async-one")
            return (await client.workflows.wait(made["id"], timeout=120))["state"]

    assert asyncio.run(scenario()) == "succeeded"
