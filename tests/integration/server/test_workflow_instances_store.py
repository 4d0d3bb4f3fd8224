"""Instances driven through the store as workers drive them (claim, finish), on SQLite and
PostgreSQL, for random graphs and random outcomes: every node and the instance end in the
states the pure model (:func:`lakeport.workflows.progress.next_step`) gives for the same
outcomes, each node ran at most once per recovery, and a recovery reruns exactly what the
model says."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User, ensure_user
from lakeport.server.tasks import service
from lakeport.server.tasks.tables import projects, runs, tasks, versions
from lakeport.server.workflows import instances as instance_rows
from lakeport.server.workflows.access import runnable_tasks
from lakeport.server.workflows.tables import instances, nodes, workflows
from lakeport.server.workflows.tables import versions as workflow_versions
from lakeport.tasks.spec import TaskSpec
from lakeport.workflows import parse_workflow
from lakeport.workflows.progress import next_step, recover

GRAPHS = 12


def random_spec(rng: random.Random, number: int) -> Any:
    size = rng.randint(1, 14)
    names = [f"n{i}" for i in range(size)]
    return parse_workflow({"name": f"w{number}", "project": "plant", "nodes": [
        {"name": name, "task": "job",
         "after": rng.sample(names[:index], rng.randint(0, min(index, 3)))}
        for index, name in enumerate(names)]})


def setup(conn: Connection, owner: User) -> None:
    now = now_ms()
    project = conn.execute(projects.insert().returning(projects.c.id).values(
        name="plant", owner_id=owner.id, created_ms=now)).scalar_one()
    spec = TaskSpec(runtime="sh", entry="main.sh")
    task = conn.execute(tasks.insert().returning(tasks.c.id).values(
        project_id=project, name="job", version=1, runtime="sh", spec=spec.model_dump_json(),
        state="active", created_ms=now, updated_ms=now)).scalar_one()
    conn.execute(versions.insert().values(task_id=task, version=1, executable="main.sh",
                                          parts="{}", created_ms=now))


def start(conn: Connection, owner: User, spec: Any) -> int:
    now = now_ms()
    workflow_id = conn.execute(workflows.insert().returning(workflows.c.id).values(
        name=spec.name, owner_id=owner.id, version=1, created_ms=now, updated_ms=now)
    ).scalar_one()
    conn.execute(workflow_versions.insert().values(workflow_id=workflow_id, version=1,
                                                   spec=spec.model_dump_json(by_alias=True),
                                                   created_ms=now))
    workflow = conn.execute(sa.select(workflows).where(workflows.c.id == workflow_id)).one()
    plan = instance_rows.version_plan(conn, workflow_id, 1)
    made = instance_rows.create(conn, workflow, plan, runnable_tasks(conn, owner, spec), {},
                                now, user_id=owner.id)
    assert made is not None
    return made


def work_one(conn: Connection, outcomes: dict[str, str], rng: random.Random,
             ran: dict[str, int]) -> bool:
    """Claim one queued run and finish it with the node's outcome (drawn once per node and
    recovery); whether there was one."""
    claimed = service.claim(conn, conn.dialect.name, "w", ["sh"], now_ms() + 10**9)
    if not claimed:
        return False
    node = conn.execute(sa.select(nodes.c.name).where(
        nodes.c.run_id == claimed[0].run.id)).scalar_one()
    ran[node] = ran.get(node, 0) + 1
    outcome = outcomes.setdefault(node, "failed" if rng.random() < 0.15 else "succeeded")
    service.finish(conn, claimed[0].attempt_id, claimed[0].token, outcome,
                   0 if outcome == "succeeded" else 1, "", now_ms())
    return True


def model(spec: Any, outcomes: dict[str, str], states: dict[str, str]) -> tuple[dict, str]:
    """The pure model run to its end with ``outcomes`` from ``states``."""
    states = dict(states)
    while True:
        step = next_step(spec, states)
        states.update(dict.fromkeys(step.skip, "skipped"))
        if not step.start:
            return states, step.state
        for name in step.start:
            states[name] = outcomes[name]


def stored(conn: Connection, instance_id: int) -> tuple[dict[str, str], str]:
    found = dict(conn.execute(sa.select(nodes.c.name, nodes.c.state).where(
        nodes.c.instance_id == instance_id)).all())
    return found, conn.execute(sa.select(instances.c.state).where(
        instances.c.id == instance_id)).scalar_one()


def test_random_graphs_end_as_the_model_says(store_url: str) -> None:
    async def scenario() -> None:
        async with Store(store_url) as store:
            found = await ensure_user(store, "alice")
            owner = User(found.id, found.name)
            await store.transact(lambda conn: setup(conn, owner))
            for number in range(GRAPHS):
                rng = random.Random(number)
                spec = random_spec(rng, number)
                instance_id = await store.transact(lambda conn, spec=spec: start(conn, owner,
                                                                                 spec))
                outcomes: dict[str, str] = {}
                start_states: dict[str, str] = {}
                for recovery in range(2):
                    ran: dict[str, int] = {}
                    while await store.transact(
                            lambda conn, o=outcomes, r=ran, g=rng: work_one(conn, o, g, r)):
                        pass
                    assert all(count == 1 for count in ran.values()), ran
                    states, state = await store.transact(
                        lambda conn, i=instance_id: stored(conn, i))
                    assert (states, state) == model(spec, outcomes, start_states), \
                        (spec, outcomes, recovery)
                    if state != "failed":
                        break
                    start_states = {**states, **recover(spec, states)}
                    outcomes = {name: outcome for name, outcome in outcomes.items()
                                if start_states[name] != "pending"}
                    outcomes.update({name: "succeeded" for name, value in start_states.items()
                                     if value == "pending"})
                    instance = await store.transact(lambda conn, i=instance_id: conn.execute(
                        sa.select(instances).where(instances.c.id == i)).one())
                    await store.transact(lambda conn, i=instance: instance_rows.recover(
                        conn, i, None, now_ms()))
                    reran = await store.transact(lambda conn, i=instance_id: conn.execute(
                        sa.select(sa.func.count()).select_from(runs).join(
                            nodes, nodes.c.run_id == runs.c.id).where(
                            nodes.c.instance_id == i, runs.c.state == "queued")).scalar_one())
                    assert reran == len(next_step(spec, start_states).start)

    asyncio.run(scenario())
