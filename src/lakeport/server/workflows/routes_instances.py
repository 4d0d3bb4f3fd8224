"""Routes on workflow instances: run (the seed's ``initiate``), history (``getHistory``),
status (``status``), mapping (``getMapping``), transitions, abort, pause, resume and recover
(``recover``, from the failed nodes or from a chosen one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from lakeport.errors import Invalid
from lakeport.server.access import Level
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.paging import Cursor, Id, Limit, decode_cursor, encode_cursor
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User
from lakeport.server.tasks.service import queued_by_hooks
from lakeport.server.workflows import instances as instance_rows
from lakeport.server.workflows.access import (
    instance_access,
    owner_of,
    runnable_tasks,
    workflow_access,
)
from lakeport.server.workflows.records import (
    event_records,
    instance_summary,
    mapping_record,
    status_record,
)
from lakeport.server.workflows.tables import instances, nodes, versions, workflows

router = APIRouter(tags=["workflows"])
STATES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict, max_length=100)
    version: int | None = Field(None, ge=1, description="the workflow's version to run "
                                                         "(its newest by default)")


class RecoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_node: str | None = Field(None, description="run this node and everything downstream "
                                                    "of it again (default: the nodes that did "
                                                    "not succeed)")


def _notify(request: Request, queued: int) -> None:
    if queued:
        request.app.state.tasks_wakeup.notify(queued)


@router.post("/workflows/{name}/instances", status_code=201,
             summary="Run the workflow: an instance with parameters, on copies of its tasks "
                     "(queued while max_active_instances are active)")
async def run(name: str, request: Request, body: RunIn | None = None,
              user: User = Depends(current_user),
              store: Store = Depends(get_store)) -> JSONResponse:
    body = body or RunIn()
    now = now_ms()

    def start(conn: Connection) -> tuple[dict[str, Any], int]:
        workflow = workflow_access(conn, user, name, Level.WRITE, "run")
        version = body.version or workflow.version
        text = conn.execute(sa.select(versions.c.spec).where(
            versions.c.workflow_id == workflow.id, versions.c.version == version)).scalar()
        if text is None:
            raise Invalid(f"workflow {name!r} has no version {version}")
        plan = instance_rows.plan_of(text)
        parameters = instance_rows.check_parameters(plan.spec, body.parameters)
        task_rows = runnable_tasks(conn, owner_of(conn, workflow.owner_id), plan.spec)
        instance_id = instance_rows.create(conn, workflow, plan, task_rows, parameters, now,
                                           user_id=user.id)
        assert instance_id is not None
        queued = queued_by_hooks(conn) + _queued_runs(conn, instance_id)
        instance = conn.execute(sa.select(instances).where(instances.c.id == instance_id)).one()
        return status_record(conn, instance, name), queued

    record, queued = await store.transact(start)
    _notify(request, queued)
    return JSONResponse(record, 201)


def _queued_runs(conn: Connection, instance_id: int) -> int:
    return int(conn.execute(sa.select(sa.func.count()).where(
        nodes.c.instance_id == instance_id, nodes.c.state == "queued")).scalar_one())


@router.get("/workflows/{name}/instances",
            summary="The workflow's history: its instances, newest first")
async def history(name: str, state: list[str] | None = Query(None, description=", ".join(STATES)),
                  limit: Limit = 100, cursor: Cursor = None,
                  user: User = Depends(current_user),
                  store: Store = Depends(get_store)) -> JSONResponse:
    before = decode_cursor(cursor)

    def read(conn: Connection) -> dict[str, Any]:
        workflow = workflow_access(conn, user, name, Level.READ, "read")
        query = sa.select(instances).where(instances.c.workflow_id == workflow.id)
        if state:
            query = query.where(instances.c.state.in_(state))
        if isinstance(before, int):
            query = query.where(instances.c.id < before)
        rows = conn.execute(query.order_by(instances.c.id.desc()).limit(limit + 1)).all()
        return {"items": [instance_summary(row, name) for row in rows[:limit]],
                "next_cursor": encode_cursor(rows[limit - 1].id) if len(rows) > limit
                else None}

    return JSONResponse(await store.transact(read))


@router.get("/workflows/instances/{instance_id}",
            summary="An instance's status: every node's state, attempts, logs and outputs")
async def status(instance_id: Id, user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> JSONResponse:
    def read(conn: Connection) -> dict[str, Any]:
        workflow, instance = instance_access(conn, user, instance_id, Level.READ, "read")
        return status_record(conn, instance, workflow.name)

    return JSONResponse(await store.transact(read))


@router.get("/workflows/instances/{instance_id}/mapping",
            summary="Each node's task and the instance's copy of it")
async def mapping(instance_id: Id, user: User = Depends(current_user),
                  store: Store = Depends(get_store)) -> JSONResponse:
    def read(conn: Connection) -> list[dict[str, Any]]:
        instance_access(conn, user, instance_id, Level.READ, "read")
        return mapping_record(conn, instance_id)

    return JSONResponse({"items": await store.transact(read), "next_cursor": None})


@router.get("/workflows/instances/{instance_id}/events",
            summary="The instance's transitions (after= the last id seen)")
async def instance_events(instance_id: Id, after: int = Query(0, ge=0, le=2**62),
                          limit: Limit = 1000, user: User = Depends(current_user),
                          store: Store = Depends(get_store)) -> JSONResponse:
    def read(conn: Connection) -> list[dict[str, Any]]:
        instance_access(conn, user, instance_id, Level.READ, "read")
        return event_records(conn, instance_id, after, limit)

    return JSONResponse({"items": await store.transact(read), "next_cursor": None})


def _act(user: User, instance_id: int, doing: str,
         change: Callable[[Connection, Any, int], int]) -> Callable[[Connection], Any]:
    def act(conn: Connection) -> tuple[dict[str, Any], int]:
        workflow, instance = instance_access(conn, user, instance_id, Level.WRITE, doing)
        queued = change(conn, instance, now_ms()) + queued_by_hooks(conn)
        fresh = conn.execute(sa.select(instances).where(instances.c.id == instance_id)).one()
        return status_record(conn, fresh, workflow.name), queued

    return act


@router.post("/workflows/instances/{instance_id}/recover",
             summary="Run an ended instance again from its failed and cancelled nodes, "
                     "keeping what succeeded (or from_node and what follows it)")
async def recover(instance_id: Id, request: Request, body: RecoverIn | None = None,
                  user: User = Depends(current_user),
                  store: Store = Depends(get_store)) -> JSONResponse:
    from_node = (body or RecoverIn()).from_node

    def again(conn: Connection, instance: Any, now: int) -> int:
        workflow = conn.execute(sa.select(workflows).where(
            workflows.c.id == instance.workflow_id)).one()
        plan = instance_rows.version_plan(conn, workflow.id, instance.version)
        runnable_tasks(conn, owner_of(conn, workflow.owner_id), plan.spec)  # still allowed?
        return instance_rows.recover(conn, instance, from_node, now)

    record, queued = await store.transact(_act(user, instance_id, "recover", again))
    _notify(request, queued)
    return JSONResponse(record)


@router.post("/workflows/instances/{instance_id}/{action}",
             summary="Abort (stop its runs, cancel the rest), pause (running nodes finish, "
                     "none starts) or resume an instance")
async def control(instance_id: Id, action: Literal["abort", "pause", "resume"],
                  request: Request, user: User = Depends(current_user),
                  store: Store = Depends(get_store)) -> JSONResponse:
    changes: dict[str, Callable[[Connection, Any, int], int]] = {
        "abort": instance_rows.abort,
        "pause": lambda conn, instance, now: instance_rows.set_paused(conn, instance, True, now),
        "resume": lambda conn, instance, now: instance_rows.set_paused(conn, instance, False,
                                                                       now)}
    record, queued = await store.transact(_act(user, instance_id, action, changes[action]))
    _notify(request, queued)
    return JSONResponse(record)


__all__ = ["router"]
