"""The copies of its tasks an instance runs (the seed's ``preInitiate()``): each node's task
as it is when the instance is made (its current version's code, the node's retries and
timeout, no schedule of its own), with links to the outputs of the upstream nodes' copies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.server.tasks import service
from lakeport.server.tasks.scheduler import schedule_columns
from lakeport.server.tasks.tables import links, tasks
from lakeport.server.tasks.tables import versions as task_versions
from lakeport.tasks.schedule import Now
from lakeport.workflows.definition import WorkflowSpec


def copy_name(node: str, instance_id: int) -> str:
    """The name of a node's task copy: ``<node>@<instance>`` (``@`` is not allowed in task
    names, so a copy never meets a task deployed by hand)."""
    suffix = f"@{instance_id}"
    return node[:128 - len(suffix)] + suffix


def copy_tasks(conn: Connection, instance_id: int, spec: WorkflowSpec,
                task_rows: Mapping[str, Any], now: int) -> dict[str, int]:
    """Copy each node's task for the instance (its current version's code, the node's
    retries and timeout, no schedule) and link the files it takes from upstream nodes; the
    copies' ids by node."""
    rows = []
    for node in spec.nodes:
        base = task_rows[node.name]
        settings = service.spec_of(base)
        changes: dict[str, Any] = {"schedule": Now()}
        if node.retries is not None:
            changes["retries"] = node.retries
        if node.timeout is not None:
            changes["timeout"] = node.timeout
        copied = settings.model_copy(update=changes)
        rows.append({"project_id": base.project_id, "name": copy_name(node.name, instance_id),
                     "version": 1, "runtime": base.runtime, "spec": copied.model_dump_json(),
                     "created_ms": now, "updated_ms": now, "instance_id": instance_id,
                     **schedule_columns(copied, now)})
    ids = conn.execute(tasks.insert().returning(tasks.c.id, sort_by_parameter_order=True),
                       rows).scalars().all()
    copies = {node.name: int(task_id) for node, task_id in zip(spec.nodes, ids, strict=True)}
    base_ids = {row.id for row in task_rows.values()}
    code = {(row.task_id): row for row in conn.execute(
        sa.select(task_versions).join(tasks, (tasks.c.id == task_versions.c.task_id)
                                      & (tasks.c.version == task_versions.c.version))
        .where(task_versions.c.task_id.in_(base_ids)))}
    conn.execute(task_versions.insert(), [
        {"task_id": copies[node.name], "version": 1,
         "executable": code[task_rows[node.name].id].executable,
         "parts": code[task_rows[node.name].id].parts, "created_ms": now}  # same lake objects
        for node in spec.nodes])
    own_links: dict[int, list[Any]] = {}
    for link in conn.execute(sa.select(links).where(links.c.task_id.in_(base_ids))
                             .order_by(links.c.id)):
        own_links.setdefault(link.task_id, []).append(link)
    linked = []
    for node in spec.nodes:
        taken = {link.target or link.file for link in node.inputs}
        for link in node.inputs:
            linked.append({"task_id": copies[node.name],
                           "source_project": task_rows[link.source].project,
                           "source_task": copy_name(link.source, instance_id),
                           "file_name": link.file, "target": link.target or link.file})
        for link in own_links.get(task_rows[node.name].id, []):
            if link.target in taken:
                continue
            source = _upstream_running(spec, node.name, task_rows,
                                       (link.source_project, link.source_task))
            linked.append({"task_id": copies[node.name], "source_project": link.source_project,
                           "source_task": link.source_task if source is None
                           else copy_name(source, instance_id),
                           "file_name": link.file_name, "target": link.target})
    if linked:
        conn.execute(links.insert(), linked)
    return copies


def _upstream_running(spec: WorkflowSpec, name: str, task_rows: Mapping[str, Any],
                      task: tuple[str, str]) -> str | None:
    """The nearest node upstream of ``name`` that runs ``task`` (project, name): a link the
    task has to that task's output then takes this instance's output."""
    after = {node.name: node.after for node in spec.nodes}
    seen: set[str] = set()
    level = list(after[name])
    while level:
        for before in level:
            if (task_rows[before].project, task_rows[before].name) == task:
                return before
        seen.update(level)
        level = [up for before in level for up in after[before] if up not in seen]
    return None


__all__ = ["copy_name", "copy_tasks"]
