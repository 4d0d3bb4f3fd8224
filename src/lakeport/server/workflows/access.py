"""Who may do what with workflows and their instances: the server's one access model
(``lakeport.server.access``) on the ``workflow`` kind. An instance takes the level of its
workflow. Read: show, list, status, history, mapping; write: run, abort, pause, resume,
recover; admin: apply a new version, delete, grant.

A workflow may use only tasks its owner may run (``write`` on their project): checked when a
version is applied and again whenever an instance starts, so a revoked grant stops the
workflow from running the tasks it gave.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.errors import Forbidden, Invalid, NotFound
from lakeport.server.access import Level, owned_level, require
from lakeport.server.store.users import User, users
from lakeport.server.tasks.access import project_access
from lakeport.server.tasks.tables import tasks
from lakeport.server.workflows.tables import instances, workflows
from lakeport.tasks.spec import check_name
from lakeport.workflows.definition import WorkflowSpec

KIND = "workflow"
_bind = sa.bindparam
_WORKFLOW = (sa.select(workflows, users.c.name.label("owner"))
             .join(users, users.c.id == workflows.c.owner_id)
             .where(workflows.c.name == _bind("name")))
_INSTANCE = (sa.select(instances, workflows.c.name.label("workflow"))
             .join(workflows, workflows.c.id == instances.c.workflow_id)
             .where(instances.c.id == _bind("instance_id")))


def workflow_level(conn: Connection, user: User, row: Any) -> Level:
    """The caller's level on the workflow ``row``."""
    return owned_level(conn, user, KIND, row.name, row.owner_id)


def workflow_access(conn: Connection, user: User, name: str, need: Level, doing: str) -> Any:
    """The workflow's row (with ``owner``, its owner's name) when the caller may ``doing``
    it; NotFound below read, as if it did not exist."""
    check_name(name, "workflow")
    row = conn.execute(_WORKFLOW, {"name": name}).first()
    if row is None:
        raise NotFound(f"unknown workflow {name!r}")
    require(workflow_level(conn, user, row), need, KIND, name, doing, row.owner)
    return row


def instance_access(conn: Connection, user: User, instance_id: int, need: Level,
                    doing: str) -> tuple[Any, Any]:
    """(workflow row, instance row) when the caller may ``doing`` the instance."""
    instance = conn.execute(_INSTANCE, {"instance_id": instance_id}).first()
    if instance is None:
        raise NotFound(f"unknown workflow instance {instance_id}")
    try:
        workflow = workflow_access(conn, user, instance.workflow, need, doing)
    except NotFound:
        raise NotFound(f"unknown workflow instance {instance_id}") from None
    return workflow, instance


def owner_of(conn: Connection, owner_id: int) -> User:
    row = conn.execute(sa.select(users).where(users.c.id == owner_id)).one()
    return User(row.id, row.name, admin=row.admin)


def runnable_tasks(conn: Connection, owner: User, spec: WorkflowSpec) -> dict[str, Any]:
    """Each node's task row (with ``project``, its project's name), when ``owner`` may run
    it: Invalid naming the node for a task that does not exist (or that the owner may not
    see), Forbidden for one the owner may only read."""
    wanted: dict[str, set[str]] = {}
    for node in spec.nodes:
        project, task = node.task_ref(spec.project)
        wanted.setdefault(project, set()).add(task)
    found: dict[tuple[str, str], Any] = {}
    for project, names in wanted.items():
        try:
            project_row = project_access(conn, owner, project, Level.WRITE, "run tasks of")
        except NotFound:
            node = _first_node(spec, project, names)
            raise Invalid(f"workflow {spec.name!r}: node {node!r} runs a task of project "
                          f"{project!r}, which does not exist or {owner.name} may not "
                          "see") from None
        except Forbidden as exc:
            node = _first_node(spec, project, names)
            raise Forbidden(f"workflow {spec.name!r}: node {node!r}: {exc}") from None
        for row in conn.execute(sa.select(tasks).where(
                tasks.c.project_id == project_row.id, tasks.c.name.in_(names),
                tasks.c.instance_id.is_(None))):
            found[project, row.name] = TaskRow(row, project)
    rows = {}
    for node in spec.nodes:
        ref = node.task_ref(spec.project)
        if ref not in found:
            raise Invalid(f"workflow {spec.name!r}: node {node.name!r} runs task "
                          f"{'/'.join(ref)!r}, which does not exist")
        rows[node.name] = found[ref]
    return rows


def _first_node(spec: WorkflowSpec, project: str, names: Iterable[str]) -> str:
    return next(node.name for node in spec.nodes
                if node.task_ref(spec.project) in {(project, name) for name in names})


class TaskRow:
    """A task row with its project's name (``project``)."""

    def __init__(self, row: Any, project: str) -> None:
        self._row = row
        self.project = project

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


__all__ = ["KIND", "TaskRow", "instance_access", "owner_of", "runnable_tasks", "workflow_access",
           "workflow_level"]
