"""Workflow instances in the store: start one (the copies of its tasks, its nodes, the first
runs), move it on when one of its runs ends, abort, pause, resume and recover it.

Every function runs inside the caller's transaction (:meth:`Store.transact
<lakeport.server.store.Store.transact>`), and a node's run ending moves its instance on in the
transaction that ends the run (a hook of the task service). So the store never holds a run
that ended without its instance having moved on, nor a started node without its run: a
server killed at any point resumes every instance where it was, no node run twice, none
forgotten. On PostgreSQL the instance's row is locked while it moves on, so two runs ending
at once cannot both miss a node that waits for both.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.errors import Conflict, Invalid
from lakeport.server.store import insert_ignore
from lakeport.server.tasks import service
from lakeport.server.tasks.tables import tasks
from lakeport.server.workflows.copies import copy_tasks
from lakeport.server.workflows.tables import events, instances, nodes, versions
from lakeport.tasks.spec import ENDED as RUN_ENDED
from lakeport.workflows.definition import Node, WorkflowSpec, topological_order
from lakeport.workflows.progress import abort as aborted_nodes
from lakeport.workflows.progress import instance_state, next_step
from lakeport.workflows.progress import recover as recovered_nodes

ENDED = frozenset({"succeeded", "failed", "cancelled"})
"""Instance states an instance leaves only by recovery."""
ACTIVE = ("running", "paused")
"""Instance states that hold one of the workflow's ``max_active_instances``."""
TRIGGER = "workflow"
"""The trigger of a node's run."""
_PARAMETER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NODE_STATE = {"succeeded": "succeeded", "cancelled": "cancelled"}
"""A node's state from its run's end (failed and lost: failed)."""

_bind = sa.bindparam
_INSTANCE = sa.select(instances).where(instances.c.id == _bind("instance_id"))
_NODES = sa.select(nodes).where(nodes.c.instance_id == _bind("instance_id"))
_NODE_OF_RUN = sa.select(nodes).where(nodes.c.run_id == _bind("run_id"))
_EVENT = events.insert()
_VERSION_MADE = sa.select(versions.c.created_ms).where(
    versions.c.workflow_id == _bind("workflow_id"), versions.c.version == _bind("version"))
_NODES_NAMED = sa.select(nodes).where(nodes.c.instance_id == _bind("instance_id"),
                                      nodes.c.name.in_(_bind("names", expanding=True)))
_SKIP = (nodes.update().where(nodes.c.instance_id == _bind("of_instance"),
                              nodes.c.name.in_(_bind("names", expanding=True)),
                              nodes.c.state == "pending")
         .values(state="skipped", updated_ms=_bind("at")).returning(nodes.c.name))
_COUNTS = (sa.select(nodes.c.state, sa.func.count()).where(
    nodes.c.instance_id == _bind("instance_id")).group_by(nodes.c.state))


@dataclass(frozen=True)
class Plan:
    """A workflow version, parsed once: its spec, its nodes in topological order, each
    node's upstream and downstream neighbours, and whether a node has a concurrency
    limit."""

    spec: WorkflowSpec
    order: tuple[str, ...]
    after: Mapping[str, tuple[str, ...]]
    then: Mapping[str, tuple[str, ...]]
    limited: bool

    def downstream(self, name: str) -> list[str]:
        """Every node that runs after ``name``, directly or not."""
        found: dict[str, None] = {}
        todo = list(self.then[name])
        while todo:
            node = todo.pop()
            if node not in found:
                found[node] = None
                todo.extend(self.then[node])
        return list(found)


@functools.lru_cache(maxsize=256)
def plan_of(text: str) -> Plan:
    """The plan of a stored spec (JSON)."""
    spec = WorkflowSpec.model_validate_json(text)
    after = {node.name: tuple(dict.fromkeys(node.after)) for node in spec.nodes}
    then: dict[str, list[str]] = {node.name: [] for node in spec.nodes}
    for name, upstream in after.items():
        for before in upstream:
            then[before].append(name)
    return Plan(spec, tuple(topological_order(spec)), after,
                {name: tuple(nodes) for name, nodes in then.items()},
                any(node.concurrency is not None for node in spec.nodes))


_PLANS: dict[tuple[int, int, int], Plan] = {}
"""Plans by (workflow id, version, the version's creation time): a version never changes,
so its spec is read from the store once (the time tells a workflow made again under a
reused id)."""


def version_plan(conn: Connection, workflow_id: int, version: int) -> Plan:
    """The plan of a workflow's version."""
    created = conn.execute(_VERSION_MADE, {"workflow_id": workflow_id, "version": version}
                           ).scalar_one()
    key = (workflow_id, version, created)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 256:
            _PLANS.clear()
        plan = _PLANS[key] = plan_of(conn.execute(sa.select(versions.c.spec).where(
            versions.c.workflow_id == workflow_id, versions.c.version == version)
        ).scalar_one())
    return plan


def add_event(conn: Connection, instance_id: int, state: str, now: int,
              node: str | None = None, detail: str = "") -> None:
    conn.execute(_EVENT, {"instance_id": instance_id, "node": node, "state": state,
                          "detail": detail[:2000], "at_ms": now})


def node_parameters(node: Node, given: Mapping[str, str]) -> dict[str, str]:
    """The run parameters of a node: the instance's, then the node's own with ``{{ name }}``
    replaced by the instance's values."""
    own = {key: _PARAMETER.sub(lambda match: given.get(match.group(1), ""), value)
           for key, value in node.parameters.items()}
    return {**given, **own}


def check_parameters(spec: WorkflowSpec, given: Mapping[str, Any]) -> dict[str, str]:
    """The instance's parameters as text; Invalid for one the workflow does not declare or
    a declared one that is missing."""
    for name in given:
        if name not in spec.parameters:
            raise Invalid(f"workflow {spec.name!r} has no parameter {name!r} (parameters: "
                          f"{', '.join(spec.parameters) or 'none'})")
    missing = [name for name in spec.parameters if name not in given]
    if missing:
        raise Invalid(f"workflow {spec.name!r} needs parameter {missing[0]!r}")
    return {name: value if isinstance(value, str) else orjson.dumps(value).decode()
            for name, value in given.items()}


def create(conn: Connection, workflow: Any, plan: Plan, task_rows: Mapping[str, Any],
           parameters: dict[str, str], now: int, *, user_id: int | None,
           trigger: str = "manual", trigger_key: str | None = None) -> int | None:
    """Make an instance of ``workflow`` at ``plan``'s version: a copy of each node's task
    (``task_rows``: node name → base task row with ``project``, its project's name), its
    nodes, and, when the workflow has a free slot, its first runs. Its id; None when
    ``trigger_key`` started an instance already."""
    values = {"workflow_id": workflow.id, "version": plan.spec.version, "state": "queued",
              "paused": False, "trigger": trigger, "trigger_key": trigger_key,
              "parameters": orjson.dumps(parameters).decode(), "user_id": user_id,
              "created_ms": now, "updated_ms": now}
    if trigger_key is None:
        instance_id = conn.execute(instances.insert().returning(instances.c.id), values
                                   ).scalar_one()
    else:
        instance_id = conn.execute(insert_ignore(conn.dialect.name, instances).returning(
            instances.c.id), values).scalar()
        if instance_id is None:
            return None
    copies = copy_tasks(conn, int(instance_id), plan.spec, task_rows, now)
    conn.execute(nodes.insert(), [
        {"instance_id": instance_id, "name": node.name,
         "base_task_id": task_rows[node.name].id, "base_version": task_rows[node.name].version,
         "task_id": copies[node.name], "state": "pending", "run_id": None, "updated_ms": now}
        for node in plan.spec.nodes])
    add_event(conn, instance_id, "queued", now, detail=trigger)
    _start_waiting(conn, workflow.id, plan.spec.max_active_instances, now)
    return int(instance_id)


def _lock(conn: Connection, instance_id: int, *, skip_locked: bool = False) -> Any:
    """The instance's row, locked for this transaction on PostgreSQL (``FOR NO KEY UPDATE``:
    the rows this transaction adds that refer to the instance take a key-share lock on it,
    which this one does not wait for); with ``skip_locked``, None when another transaction
    holds it."""
    query = _INSTANCE
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(key_share=True, skip_locked=skip_locked)
    return conn.execute(query, {"instance_id": instance_id}).first()


def advance(conn: Connection, instance_id: int, now: int, *, skip_locked: bool = False
            ) -> int:
    """Move the instance on from its nodes' states: skip what cannot run, start what can
    (within the workflow's and the tasks' limits), and set its state. The runs queued.
    ``skip_locked``: leave it when another transaction is moving it on (PostgreSQL)."""
    instance = _lock(conn, instance_id, skip_locked=skip_locked)
    if instance is None or instance.state not in ACTIVE:
        return 0
    plan = version_plan(conn, instance.workflow_id, instance.version)
    rows = {row.name: row for row in conn.execute(_NODES, {"instance_id": instance_id})}
    states = {name: row.state for name, row in rows.items()}
    step = next_step(plan.spec, states, paused=instance.paused, order=plan.order)
    if step.skip:
        conn.execute(nodes.update().where(
            nodes.c.instance_id == instance_id, nodes.c.name == _bind("node"),
            nodes.c.state == "pending").values(state="skipped", updated_ms=now),
            [{"node": name} for name in step.skip])
        conn.execute(_EVENT, [{"instance_id": instance_id, "node": name, "state": "skipped",
                               "detail": "an upstream node did not succeed", "at_ms": now}
                              for name in step.skip])
        states.update(dict.fromkeys(step.skip, "skipped"))
    starting = _within_limits(conn, plan.spec, [rows[name] for name in step.start])
    queued = _start_nodes(conn, instance, plan.spec, starting, now)
    states.update(dict.fromkeys((row.name for row in starting), "queued"))
    return queued + _settle(conn, instance, plan, set(states.values()), now)


def _settle(conn: Connection, instance: Any, plan: Plan, states: set[str], now: int) -> int:
    """Set the instance's state from the states its nodes are in (and when it ended, start
    the workflow's next queued instance); the runs queued."""
    state = instance_state({value: value for value in states}, paused=instance.paused)
    if state == instance.state:
        return 0
    ended = state in ENDED
    conn.execute(instances.update().where(instances.c.id == instance.id).values(
        state=state, updated_ms=now, ended_ms=now if ended else None))
    add_event(conn, instance.id, state, now)
    return _start_waiting(conn, instance.workflow_id, plan.spec.max_active_instances,
                          now) if ended else 0


def _after_node(conn: Connection, instance: Any, plan: Plan, name: str, state: str,
                now: int) -> int:
    """Move the instance on after node ``name`` ended in ``state``, looking only at what
    follows it (what :func:`advance` would do, since nothing else changed): the nodes after
    it whose upstream all succeeded start, or everything downstream of it that has not
    started is skipped. The runs queued."""
    queued = 0
    if state == "succeeded":
        following = plan.then[name]
        if following:
            needed = {*following, *(up for node in following for up in plan.after[node])}
            rows = {row.name: row for row in conn.execute(
                _NODES_NAMED, {"instance_id": instance.id, "names": sorted(needed)})}
            ready = [rows[node] for node in following if rows[node].state == "pending"
                     and all(rows[up].state == "succeeded" for up in plan.after[node])]
            queued = _start_nodes(conn, instance, plan.spec, ready, now)
    else:
        below = plan.downstream(name)
        skipped = conn.execute(_SKIP, {"of_instance": instance.id, "names": below,
                                       "at": now}).scalars().all() if below else []
        if skipped:
            conn.execute(_EVENT, [{"instance_id": instance.id, "node": node,
                                   "state": "skipped",
                                   "detail": "an upstream node did not succeed", "at_ms": now}
                                  for node in skipped])
    counts = {value for value, _ in conn.execute(_COUNTS, {"instance_id": instance.id})}
    return queued + _settle(conn, instance, plan, counts, now)


def _within_limits(conn: Connection, spec: WorkflowSpec, ready: list[Any]) -> list[Any]:
    """The ready nodes that fit their task's concurrency limit (runs of the task on their
    way in every instance)."""
    limited = [row for row in ready if spec.node(row.name).concurrency is not None]
    if not limited:
        return ready
    busy = dict(conn.execute(sa.select(nodes.c.base_task_id, sa.func.count()).where(
        nodes.c.base_task_id.in_({row.base_task_id for row in limited}),
        nodes.c.state == "queued").group_by(nodes.c.base_task_id)).all())
    chosen = []
    for row in ready:
        limit = spec.node(row.name).concurrency
        if limit is not None:
            if busy.get(row.base_task_id, 0) >= limit:
                continue
            busy[row.base_task_id] = busy.get(row.base_task_id, 0) + 1
        chosen.append(row)
    return chosen


def _start_nodes(conn: Connection, instance: Any, spec: WorkflowSpec, starting: list[Any],
                 now: int) -> int:
    if not starting:
        return 0
    if instance.started_ms is None:
        conn.execute(instances.update().where(instances.c.id == instance.id).values(
            started_ms=now))
    copies = {row.id: row for row in conn.execute(sa.select(tasks).where(
        tasks.c.id.in_([row.task_id for row in starting])))}
    given = orjson.loads(instance.parameters)
    run_ids = service.start_runs(conn, [
        service.run_values(copies[row.task_id], TRIGGER, now,
                           parameters=node_parameters(spec.node(row.name), given))
        for row in starting], now,
        [f"workflow instance {instance.id}, node {row.name}" for row in starting])
    conn.execute(nodes.update().where(
        nodes.c.instance_id == instance.id, nodes.c.name == _bind("node")).values(
        state="queued", run_id=_bind("run"), updated_ms=now),
        [{"node": row.name, "run": run_id} for row, run_id in zip(starting, run_ids,
                                                                   strict=True)])
    conn.execute(_EVENT, [{"instance_id": instance.id, "node": row.name, "state": "queued",
                           "detail": f"run {run_id}", "at_ms": now}
                          for row, run_id in zip(starting, run_ids, strict=True)])
    return len(run_ids)


def _start_waiting(conn: Connection, workflow_id: int, most: int, now: int) -> int:
    """Start the workflow's oldest queued instances while it has fewer than ``most``
    active; the runs queued."""
    active = conn.execute(sa.select(sa.func.count()).where(
        instances.c.workflow_id == workflow_id, instances.c.state.in_(ACTIVE))).scalar_one()
    if active >= most:
        return 0
    waiting = conn.execute(sa.select(instances.c.id).where(
        instances.c.workflow_id == workflow_id, instances.c.state == "queued")
        .order_by(instances.c.id).limit(most - active)).scalars().all()
    queued = 0
    for instance_id in waiting:
        conn.execute(instances.update().where(instances.c.id == instance_id,
                                              instances.c.state == "queued").values(
            state="running", updated_ms=now))
        add_event(conn, instance_id, "running", now)
        queued += advance(conn, instance_id, now)
    return queued


def run_ended(conn: Connection, run: Any, now: int) -> int:
    """The task service's hook: a node's run ended, so the node takes its outcome and its
    instance moves on (and, when the node's task has a concurrency limit, other instances
    waiting for it). The runs queued."""
    node = conn.execute(_NODE_OF_RUN, {"run_id": run.id}).first()
    if node is None or node.state != "queued":
        return 0  # not a node's run, or the node moved on (aborted, recovered)
    instance = _lock(conn, node.instance_id)  # before anything of it changes: one at a time
    node = conn.execute(_NODE_OF_RUN, {"run_id": run.id}).first()
    if node.state != "queued":
        return 0
    state = _NODE_STATE.get(run.state, "failed")
    conn.execute(nodes.update().where(
        nodes.c.instance_id == node.instance_id, nodes.c.name == node.name,
        nodes.c.run_id == run.id).values(state=state, updated_ms=now))
    add_event(conn, node.instance_id, state, now, node.name,
              f"run {run.id} {run.state}" + (f": {run.reason}" if run.reason else ""))
    if instance.state not in ACTIVE:
        return 0
    plan = version_plan(conn, instance.workflow_id, instance.version)
    if instance.paused or plan.limited:
        queued = advance(conn, node.instance_id, now)
    else:
        queued = _after_node(conn, instance, plan, node.name, state, now)
    if plan.spec.node(node.name).concurrency is not None:
        queued += _wake_limited(conn, node.base_task_id, node.instance_id, now)
    return queued


def _wake_limited(conn: Connection, base_task_id: int | None, done: int, now: int) -> int:
    """Move on the active instances with a node of ``base_task_id`` waiting (a slot of its
    concurrency limit came free)."""
    if base_task_id is None:
        return 0
    waiting = conn.execute(sa.select(nodes.c.instance_id).distinct().join(
        instances, instances.c.id == nodes.c.instance_id).where(
        nodes.c.base_task_id == base_task_id, nodes.c.state == "pending",
        instances.c.state == "running", nodes.c.instance_id != done)
        .order_by(nodes.c.instance_id).limit(100)).scalars().all()
    # one moved on by another transaction right now is left to the sweep (two ends waking
    # each other's instances must not wait on each other)
    return sum(advance(conn, instance_id, now, skip_locked=True) for instance_id in waiting)


def limited_running(conn: Connection) -> list[int]:
    """The running instances of versions with a concurrency limit that have a node waiting:
    :func:`advance` each now and then, so none waits for good on a slot that came free
    while another transaction held it."""
    rows = conn.execute(sa.select(instances.c.id, instances.c.workflow_id, instances.c.version)
                        .where(instances.c.state == "running", instances.c.paused.is_(False),
                               sa.exists().where(nodes.c.instance_id == instances.c.id,
                                                 nodes.c.state == "pending"))
                        .order_by(instances.c.id).limit(1000)).all()
    return [row.id for row in rows
            if version_plan(conn, row.workflow_id, row.version).limited]


def abort(conn: Connection, instance: Any, now: int) -> int:
    """Cancel the instance: its nodes on their way (their runs are stopped) and those not
    started. Conflict when it has ended. The runs queued (none)."""
    instance = _lock(conn, instance.id)
    if instance.state in ENDED:
        raise Conflict(f"instance {instance.id} has ended ({instance.state}): nothing to abort")
    rows = {row.name: row for row in conn.execute(_NODES, {"instance_id": instance.id})}
    changed = aborted_nodes({name: row.state for name, row in rows.items()})
    if changed:
        conn.execute(nodes.update().where(
            nodes.c.instance_id == instance.id, nodes.c.name == _bind("node")).values(
            state="cancelled", updated_ms=now), [{"node": name} for name in changed])
        conn.execute(_EVENT, [{"instance_id": instance.id, "node": name, "state": "cancelled",
                               "detail": "aborted", "at_ms": now} for name in changed])
    for name in changed:
        run_id = rows[name].run_id
        if rows[name].state == "queued" and run_id is not None:
            run = service.run_of(conn, run_id)
            if run.state not in RUN_ENDED:
                service.control(conn, run, "stop", now)
    conn.execute(instances.update().where(instances.c.id == instance.id).values(
        state="cancelled", updated_ms=now, ended_ms=now))
    add_event(conn, instance.id, "cancelled", now, detail="aborted")
    spec = version_plan(conn, instance.workflow_id, instance.version).spec
    return _start_waiting(conn, instance.workflow_id, spec.max_active_instances, now)


def set_paused(conn: Connection, instance: Any, paused: bool, now: int) -> int:
    """Pause (running nodes finish, none starts) or resume the instance; the runs queued.
    Conflict when it has ended."""
    instance = _lock(conn, instance.id)
    if instance.state in ENDED:
        raise Conflict(f"instance {instance.id} has ended ({instance.state}): "
                       f"nothing to {'pause' if paused else 'resume'}")
    conn.execute(instances.update().where(instances.c.id == instance.id).values(
        paused=paused, updated_ms=now))
    add_event(conn, instance.id, "paused" if paused else "resumed", now)
    return advance(conn, instance.id, now)


def recover(conn: Connection, instance: Any, from_node: str | None, now: int) -> int:
    """Run again the nodes of an ended instance that did not succeed, or ``from_node`` and
    everything downstream of it, keeping what succeeded; the runs queued. Conflict when
    the instance has not ended, or (without ``from_node``) did not fail."""
    instance = _lock(conn, instance.id)
    if instance.state not in ENDED:
        raise Conflict(f"instance {instance.id} is {instance.state}: recover an instance "
                       "once it has failed or was aborted")
    if instance.state == "succeeded" and from_node is None:
        raise Conflict(f"instance {instance.id} succeeded: nothing failed to recover (give "
                       "from_node to run a node and what follows again)")
    plan = version_plan(conn, instance.workflow_id, instance.version)
    states = {row.name: row.state for row in conn.execute(_NODES, {"instance_id": instance.id})}
    again = recovered_nodes(plan.spec, states, from_node)
    conn.execute(nodes.update().where(
        nodes.c.instance_id == instance.id, nodes.c.name == _bind("node")).values(
        state="pending", updated_ms=now), [{"node": name} for name in again])
    conn.execute(instances.update().where(instances.c.id == instance.id).values(
        state="queued", paused=False, ended_ms=None, updated_ms=now,
        recoveries=instances.c.recoveries + 1))
    add_event(conn, instance.id, "recovered", now,
              detail=f"from {from_node}" if from_node else f"{len(again)} nodes again")
    return _start_waiting(conn, instance.workflow_id, plan.spec.max_active_instances, now)


__all__ = ["ACTIVE", "ENDED", "TRIGGER", "Plan", "abort", "add_event", "advance",
           "check_parameters", "create", "limited_running", "node_parameters",
           "plan_of", "recover",
           "run_ended", "set_paused", "version_plan"]
