"""Workflows and instances as the API shows them: a workflow with its versions, an instance's
status (each node with its state, its runs' attempts, and where their logs and outputs are),
its task mapping and its transitions."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.server.tasks.lakefiles import run_folder
from lakeport.server.tasks.tables import attempts, projects, runs, tasks
from lakeport.server.times import format_time
from lakeport.server.workflows.instances import version_plan
from lakeport.server.workflows.tables import events, nodes, versions

API = "/api/v1"


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_time(ms)


def workflow_record(conn: Connection, row: Any, version: int | None = None) -> dict[str, Any]:
    """A workflow at ``version`` (its newest by default), with the versions it has."""
    plan = version_plan(conn, row.id, version or row.version)
    spec = plan.spec.model_dump(mode="json", by_alias=True, exclude={"name", "version"})
    known = conn.execute(sa.select(versions.c.version, versions.c.created_ms).where(
        versions.c.workflow_id == row.id).order_by(versions.c.version)).all()
    return {"name": row.name, "version": plan.spec.version, "latest": row.version,
            "owner": row.owner, **spec,
            "versions": [{"version": number, "created": _time(ms)} for number, ms in known],
            "created": _time(row.created_ms), "updated": _time(row.updated_ms)}


def instance_summary(row: Any, workflow: str) -> dict[str, Any]:
    """An instance without its nodes (a line of the history)."""
    return {"id": row.id, "workflow": workflow, "version": row.version, "state": row.state,
            "paused": row.paused, "trigger": row.trigger, "trigger_key": row.trigger_key,
            "parameters": orjson.loads(row.parameters), "recoveries": row.recoveries,
            "created": _time(row.created_ms), "started": _time(row.started_ms),
            "ended": _time(row.ended_ms), "updated": _time(row.updated_ms)}


def _node_rows(conn: Connection, instance_id: int) -> list[Any]:
    return conn.execute(
        sa.select(nodes, tasks.c.name.label("copy"), projects.c.name.label("project"))
        .join(tasks, tasks.c.id == nodes.c.task_id)
        .join(projects, projects.c.id == tasks.c.project_id)
        .where(nodes.c.instance_id == instance_id)).all()


def _base_names(conn: Connection, rows: list[Any]) -> dict[int, str]:
    ids = {row.base_task_id for row in rows if row.base_task_id is not None}
    return {task_id: f"{project}/{name}" for task_id, name, project in conn.execute(
        sa.select(tasks.c.id, tasks.c.name, projects.c.name)
        .join(projects, projects.c.id == tasks.c.project_id).where(tasks.c.id.in_(ids)))}


def status_record(conn: Connection, instance: Any, workflow: str) -> dict[str, Any]:
    """The instance with each node (in the workflow's order): its state (``queued``,
    ``running`` or ``paused`` from its run while on its way), its task and copy, and the
    attempts of all its runs with their durations, logs and outputs."""
    plan = version_plan(conn, instance.workflow_id, instance.version)
    rows = {row.name: row for row in _node_rows(conn, instance.id)}
    base = _base_names(conn, list(rows.values()))
    copies = {row.task_id: row for row in rows.values()}
    run_states = dict(conn.execute(sa.select(runs.c.id, runs.c.state).where(
        runs.c.id.in_([row.run_id for row in rows.values() if row.state == "queued"]))).all())
    tried: dict[int, list[dict[str, Any]]] = {}
    for attempt in conn.execute(
            sa.select(attempts, runs.c.task_id).join(runs, runs.c.id == attempts.c.run_id)
            .where(runs.c.task_id.in_(copies)).order_by(attempts.c.run_id, attempts.c.number)):
        row = copies[attempt.task_id]
        tried.setdefault(attempt.task_id, []).append({
            "run": attempt.run_id, "number": attempt.number, "state": attempt.state,
            "worker": attempt.worker, "exit_code": attempt.exit_code, "reason": attempt.reason,
            "started": _time(attempt.started_ms), "ended": _time(attempt.ended_ms),
            "seconds": None if attempt.ended_ms is None
            else (attempt.ended_ms - attempt.started_ms) / 1000,
            "logs": f"{API}/tasks/runs/{attempt.run_id}/logs?attempt={attempt.number}",
            "outputs": f"{run_folder(row.project, row.copy, attempt.run_id)}/out"})
    items = []
    for name in plan.order:
        row = rows.get(name)
        if row is None:  # its copy was deleted with its project
            continue
        node = plan.spec.node(name)
        state = run_states.get(row.run_id, "queued") if row.state == "queued" else row.state
        items.append({"name": name, "after": node.after, "state": state,
                      "task": base.get(row.base_task_id), "version": row.base_version,
                      "copy": f"{row.project}/{row.copy}", "run": row.run_id,
                      "attempts": tried.get(row.task_id, [])})
    record = instance_summary(instance, workflow)
    record["nodes"] = items
    record["counts"] = _counts(items)
    return record


def _counts(items: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item["state"]] = counts.get(item["state"], 0) + 1
    return counts


def mapping_record(conn: Connection, instance_id: int) -> list[dict[str, Any]]:
    """The seed's ``getMapping()``: each node's base task and the instance's copy of it."""
    rows = _node_rows(conn, instance_id)
    base = _base_names(conn, rows)
    return [{"node": row.name, "task": base.get(row.base_task_id), "version": row.base_version,
             "copy": f"{row.project}/{row.copy}"} for row in sorted(rows, key=lambda r: r.name)]


def event_records(conn: Connection, instance_id: int, after: int = 0, limit: int = 1000
                  ) -> list[dict[str, Any]]:
    return [{"id": row.id, "node": row.node, "state": row.state, "detail": row.detail,
             "at": _time(row.at_ms)} for row in conn.execute(
        sa.select(events).where(events.c.instance_id == instance_id, events.c.id > after)
        .order_by(events.c.id).limit(limit))]


__all__ = ["event_records", "instance_summary", "mapping_record", "status_record",
           "workflow_record"]
