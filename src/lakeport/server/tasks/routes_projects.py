"""Routes on projects: create, list, show, delete (with their tasks)."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Conflict
from lakeport.server.access import Level, grants, levels_of_kind
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User, users
from lakeport.server.tasks.access import KIND, project_access
from lakeport.server.tasks.lakefiles import make_project_folder, system_user
from lakeport.server.tasks.records import project_record
from lakeport.server.tasks.tables import projects, tasks, versions
from lakeport.tasks.spec import check_name

router = APIRouter(tags=["tasks"])


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = Field("", max_length=10_000)


def _with_owner() -> sa.Select:
    return sa.select(projects, users.c.name.label("owner")).join(
        users, users.c.id == projects.c.owner_id)


@router.post("/tasks/projects", status_code=201, summary="Create a project")
async def create_project(body: ProjectIn, request: Request, user: User = Depends(current_user),
                         store: Store = Depends(get_store)) -> JSONResponse:
    name = check_name(body.name, "project")
    system = await system_user(request)
    try:
        async with store.begin() as conn:
            await conn.execute(projects.insert().values(
                name=name, description=body.description, owner_id=user.id,
                created_ms=now_ms()))
            await make_project_folder(conn, store.dialect, system, name, user.id)
            row = (await conn.execute(_with_owner().where(projects.c.name == name))).one()
    except IntegrityError:
        raise Conflict(f"project {name!r} exists") from None
    return JSONResponse(project_record(row, 0), 201)


@router.get("/tasks/projects", summary="Projects the caller owns or was granted")
async def list_projects(user: User = Depends(current_user),
                        store: Store = Depends(get_store)) -> JSONResponse:
    counts = sa.select(tasks.c.project_id, sa.func.count().label("n")).group_by(
        tasks.c.project_id).subquery()
    query = _with_owner().add_columns(sa.func.coalesce(counts.c.n, 0).label("n")).outerjoin(
        counts, counts.c.project_id == projects.c.id).order_by(projects.c.name)
    async with store.connect() as conn:
        if not user.admin:
            granted = await levels_of_kind(conn, user, KIND)
            query = query.where(sa.or_(projects.c.owner_id == user.id,
                                       projects.c.name.in_(list(granted))))
        rows = (await conn.execute(query)).all()
    return JSONResponse({"items": [project_record(row, row.n) for row in rows],
                         "next_cursor": None})


@router.get("/tasks/projects/{project}", summary="A project")
async def get_project(project: str, user: User = Depends(current_user),
                      store: Store = Depends(get_store)) -> JSONResponse:
    async with store.connect() as conn:
        row = await conn.run_sync(project_access, user, project, Level.READ, "read")
        count = (await conn.execute(sa.select(sa.func.count()).where(
            tasks.c.project_id == row.id))).scalar_one()
    return JSONResponse(project_record(row, count))


@router.delete("/tasks/projects/{project}", status_code=204, response_class=Response,
               summary="Delete a project with its tasks and their runs (running ones are "
                       "stopped); files its runs left stay under tasks/<project>/")
async def delete_project(project: str, request: Request, user: User = Depends(current_user),
                         store: Store = Depends(get_store)) -> Response:
    async with store.begin() as conn:
        row = await conn.run_sync(project_access, user, project, Level.ADMIN, "delete")
        keys = await bundle_keys(conn, sa.select(tasks.c.id).where(
            tasks.c.project_id == row.id))
        await conn.execute(projects.delete().where(projects.c.id == row.id))
        await conn.execute(grants.delete().where(grants.c.kind == KIND,
                                                 grants.c.name == row.name))
    await request.app.state.files_lake.delete(*keys)
    return Response(status_code=204)


async def bundle_keys(conn: AsyncConnection, task_ids: sa.Select) -> list[str]:
    """The lake objects of the versions of the tasks ``task_ids`` that no other task uses
    (a copy shares its original's objects)."""
    ids = set((await conn.execute(task_ids)).scalars())
    mine: set[str] = set()
    others: set[str] = set()
    for task_id, parts in await conn.execute(sa.select(versions.c.task_id, versions.c.parts)):
        keys = {part["key"] for part in orjson.loads(parts).values()}
        (mine if task_id in ids else others).update(keys)
    return sorted(mine - others)


__all__ = ["bundle_keys", "router"]
