"""Routes on workflow definitions: apply (create, or a new version), list, show, delete."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from sqlalchemy import Connection

from lakeport.errors import Conflict, Invalid
from lakeport.server.access import Level, grants
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User, users
from lakeport.server.tasks.tables import tasks
from lakeport.server.workflows.access import (
    KIND,
    owner_of,
    runnable_tasks,
    workflow_access,
    workflow_level,
)
from lakeport.server.workflows.instances import ACTIVE, plan_of
from lakeport.server.workflows.records import workflow_record
from lakeport.server.workflows.tables import instances, versions, workflows
from lakeport.server.workflows.topic_triggers import check_topic
from lakeport.server.workflows.triggers import reset_triggers
from lakeport.tasks.spec import check_name
from lakeport.workflows.definition import TopicTrigger, WorkflowSpec, from_edges, parse_workflow

router = APIRouter(tags=["workflows"])


def definition(name: str, body: Any) -> tuple[WorkflowSpec, bool]:
    """The checked spec of a request body: the YAML form (``nodes``) or the seed's
    (``edges`` between tasks of ``project``, ``tasks`` for nodes without an edge); whether
    the body named its version."""
    if not isinstance(body, dict):
        raise Invalid("bad workflow: expected a JSON object with project and nodes or edges")
    if body.get("name", name) != name:
        raise Invalid(f"bad workflow: the body names {body['name']!r}, the path {name!r}")
    named = body.get("version") is not None
    if "edges" in body:
        extra = set(body) - {"name", "project", "edges", "tasks", "version"}
        if extra:
            raise Invalid(f"bad workflow: {sorted(extra)[0]!r} is not a field of the edges "
                          "form (name, project, edges, tasks, version)")
        edges = body.get("edges")
        if not isinstance(edges, list) or not all(
                isinstance(edge, list | tuple) and len(edge) == 2
                and all(isinstance(end, str) for end in edge) for edge in edges):
            raise Invalid("bad workflow: edges must be a list of [task, task] pairs")
        if "project" not in body or not isinstance(body.get("tasks", []), list):
            raise Invalid("bad workflow: the edges form needs project (and tasks, a list)")
        spec = from_edges(name, body["project"], [tuple(edge) for edge in edges],
                          body.get("tasks", []), body.get("version") or 1)
    else:
        spec = parse_workflow({**body, "name": name, "version": body.get("version") or 1})
    return spec, named


@router.put("/workflows/{name}", status_code=201,
            summary="Apply a workflow: create it, or add a version (200 when the definition "
                    "is the same as the version it names, or as the newest)")
async def apply(name: str, request: Request, body: Any = Body(...),
                user: User = Depends(current_user),
                store: Store = Depends(get_store)) -> JSONResponse:
    check_name(name, "workflow")
    if name == "instances":
        raise Invalid("bad workflow name 'instances': the name is taken by the instance routes")
    spec, named = definition(name, body)
    topic_ends = {number: await check_topic(store, request.app.state.engine, user, trigger,
                                            number)
                  for number, trigger in enumerate(spec.triggers, 1)
                  if isinstance(trigger, TopicTrigger)}
    now = now_ms()

    def save(conn: Connection) -> tuple[dict[str, Any], int]:
        row = conn.execute(sa.select(workflows).where(workflows.c.name == name)).first()
        if row is None:
            runnable_tasks(conn, user, spec)
            workflow_id = conn.execute(workflows.insert().returning(workflows.c.id).values(
                name=name, owner_id=user.id, version=spec.version, created_ms=now,
                updated_ms=now)).scalar_one()
            row = _row(conn, workflow_id)
            _add_version(conn, row, spec, now, topic_ends)
            return workflow_record(conn, _row(conn, workflow_id)), 201
        row = workflow_access(conn, user, name, Level.ADMIN, "apply a version of")
        latest = plan_of(conn.execute(sa.select(versions.c.spec).where(
            versions.c.workflow_id == row.id, versions.c.version == row.version)
        ).scalar_one()).spec
        final = spec if named else spec.model_copy(update={"version": latest.version})
        if named and spec.version <= latest.version:
            stored = conn.execute(sa.select(versions.c.spec).where(
                versions.c.workflow_id == row.id, versions.c.version == spec.version)).scalar()
            if stored is not None and plan_of(stored).spec == spec:
                return workflow_record(conn, row, spec.version), 200
            raise Conflict(f"workflow {name!r} has version {latest.version}"
                           + (" with another definition" if stored is not None else "")
                           + f": apply version {latest.version + 1} or more")
        if not named and final == latest:
            return workflow_record(conn, row), 200
        if not named:
            final = spec.model_copy(update={"version": latest.version + 1})
        runnable_tasks(conn, owner_of(conn, row.owner_id), final)
        conn.execute(workflows.update().where(workflows.c.id == row.id).values(
            version=final.version, updated_ms=now))
        _add_version(conn, row, final, now, topic_ends)
        return workflow_record(conn, _row(conn, row.id)), 201

    record, status = await store.transact(save)
    return JSONResponse(record, status)


def _row(conn: Connection, workflow_id: int) -> Any:
    return conn.execute(sa.select(workflows, users.c.name.label("owner"))
                        .join(users, users.c.id == workflows.c.owner_id)
                        .where(workflows.c.id == workflow_id)).one()


def _add_version(conn: Connection, row: Any, spec: WorkflowSpec, now: int,
                 topic_ends: dict[int, int]) -> None:
    conn.execute(versions.insert().values(workflow_id=row.id, version=spec.version,
                                          spec=spec.model_dump_json(by_alias=True),
                                          created_ms=now))
    reset_triggers(conn, row.id, spec, now, topic_ends)


@router.get("/workflows", summary="The workflows the caller may read")
async def list_workflows(user: User = Depends(current_user),
                         store: Store = Depends(get_store)) -> JSONResponse:
    def listing(conn: Connection) -> list[dict[str, Any]]:
        counted: dict[tuple[int, str], int] = {
            (workflow_id, state): count for workflow_id, state, count in conn.execute(
                sa.select(instances.c.workflow_id, instances.c.state, sa.func.count()).where(
                    instances.c.state.in_(("queued", *ACTIVE)))
                .group_by(instances.c.workflow_id, instances.c.state))}
        items = []
        for row in conn.execute(sa.select(workflows, users.c.name.label("owner"))
                                .join(users, users.c.id == workflows.c.owner_id)
                                .order_by(workflows.c.name)):
            if workflow_level(conn, user, row) < Level.READ:
                continue
            record = workflow_record(conn, row)
            items.append({"name": row.name, "version": row.version, "owner": row.owner,
                          "project": record["project"], "nodes": len(record["nodes"]),
                          "triggers": [trigger["kind"] for trigger in record["triggers"]],
                          "active": sum(counted.get((row.id, state), 0) for state in ACTIVE),
                          "queued": counted.get((row.id, "queued"), 0),
                          "updated": record["updated"]})
        return items

    return JSONResponse({"items": await store.transact(listing), "next_cursor": None})


@router.get("/workflows/{name}", summary="A workflow's definition (its newest version, or "
                                         "version=)")
async def show(name: str, version: int | None = Query(None, ge=1, le=2**31 - 1),
               user: User = Depends(current_user),
               store: Store = Depends(get_store)) -> JSONResponse:
    def read(conn: Connection) -> dict[str, Any]:
        row = workflow_access(conn, user, name, Level.READ, "read")
        if version is not None and conn.execute(sa.select(versions.c.version).where(
                versions.c.workflow_id == row.id, versions.c.version == version)).first() is None:
            raise Invalid(f"workflow {name!r} has no version {version}")
        return workflow_record(conn, row, version)

    return JSONResponse(await store.transact(read))


@router.delete("/workflows/{name}", status_code=204, response_class=Response,
               summary="Delete a workflow with its instances and their task copies (409 while "
                       "an instance is active)")
async def delete(name: str, user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> Response:
    def remove(conn: Connection) -> None:
        row = workflow_access(conn, user, name, Level.ADMIN, "delete")
        active = conn.execute(sa.select(sa.func.count()).where(
            instances.c.workflow_id == row.id,
            instances.c.state.in_(("queued", "running", "paused")))).scalar_one()
        if active:
            raise Conflict(f"workflow {name!r} has {active} active instance(s): abort them "
                           "first")
        conn.execute(tasks.delete().where(tasks.c.instance_id.in_(
            sa.select(instances.c.id).where(instances.c.workflow_id == row.id))))
        conn.execute(workflows.delete().where(workflows.c.id == row.id))
        conn.execute(grants.delete().where(grants.c.kind == KIND, grants.c.name == name))

    await store.transact(remove)
    return Response(status_code=204)


__all__ = ["definition", "router"]
