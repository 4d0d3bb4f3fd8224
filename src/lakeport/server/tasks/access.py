"""Who may do what with projects, their tasks and runs: the server's one access model
(``lakeport.server.access``) on the ``project`` kind. A task and its runs take the level of
their project; workers reach only the attempts they claimed (their token).

The checks are synchronous SQLAlchemy: inside :meth:`Store.transact
<lakeport.server.store.Store.transact>`, or ``await conn.run_sync(task_access, ...)`` on an
async connection."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.errors import Forbidden, NotFound
from lakeport.server.access import Level, owned_level, require
from lakeport.server.store.users import User, users
from lakeport.server.tasks.service import run_of
from lakeport.server.tasks.tables import projects, runs, tasks
from lakeport.tasks.spec import check_name

KIND = "project"
_bind = sa.bindparam
_PROJECT = (sa.select(projects, users.c.name.label("owner"))
            .join(users, users.c.id == projects.c.owner_id).where(projects.c.name == _bind("name")))
_TASK = sa.select(tasks).where(tasks.c.project_id == _bind("project_id"),
                               tasks.c.name == _bind("name"))
_TASK_BY_ID = sa.select(tasks).where(tasks.c.id == _bind("task_id"))
_RUN_PATH = (sa.select(runs.c.task_id, projects.c.name.label("project"))
             .join(tasks, tasks.c.id == runs.c.task_id)
             .join(projects, projects.c.id == tasks.c.project_id)
             .where(runs.c.id == _bind("run_id")))


def project_access(conn: Connection, user: User, name: str, need: Level,
                   doing: str) -> Any:
    """The project row (with ``owner``, its owner's name) when the caller may ``doing`` it."""
    check_name(name, "project")
    row = conn.execute(_PROJECT, {"name": name}).first()
    if row is None:
        raise NotFound(f"unknown project {name!r}")
    level = project_level(conn, user, row)
    require(level, need, KIND, name, doing, row.owner)
    return row


def project_level(conn: Connection, user: User, row: Any) -> Level:
    """The caller's level on the project ``row``."""
    return owned_level(conn, user, KIND, row.name, row.owner_id)


def task_access(conn: Connection, user: User, project: str, task: str,
                need: Level, doing: str) -> tuple[Any, Any]:
    """(project row, task row) when the caller may ``doing`` the task."""
    project_row = project_access(conn, user, project, need, doing)
    check_name(task, "task")
    row = conn.execute(_TASK, {"project_id": project_row.id, "name": task}).first()
    if row is None:
        raise NotFound(f"unknown task {task!r} in project {project!r}")
    return project_row, row


def run_access(conn: Connection, user: User, run_id: int, need: Level,
               doing: str) -> tuple[Any, Any, Any]:
    """(project row, task row, run row) when the caller may ``doing`` the run."""
    found = conn.execute(_RUN_PATH, {"run_id": run_id}).first()
    if found is None:
        raise NotFound(f"unknown run {run_id}")
    try:
        project_row = project_access(conn, user, found.project, need, doing)
    except NotFound:
        raise NotFound(f"unknown run {run_id}") from None
    task_row = conn.execute(_TASK_BY_ID, {"task_id": found.task_id}).one()
    return project_row, task_row, run_of(conn, run_id)


def require_worker(user: User) -> None:
    """Forbidden unless the caller has the worker role (or is an operator)."""
    if not (user.worker or user.admin):
        raise Forbidden("only a worker key can claim task runs: make one with "
                        "lakeport keys create --user NAME --worker")


__all__ = ["KIND", "project_access", "project_level", "require_worker", "run_access",
           "task_access"]
