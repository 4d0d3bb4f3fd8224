"""Routes on tasks: deploy (a multipart upload of the spec, the executable, a dependencies
zip and an input zip), list, show, reschedule, copy, file links, delete."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Conflict, Invalid
from lakeport.server.access import Level
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.files.lake import CHUNK
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User
from lakeport.server.tasks.access import project_access, task_access
from lakeport.server.tasks.lakefiles import put_object
from lakeport.server.tasks.records import task_record
from lakeport.server.tasks.routes_projects import bundle_keys
from lakeport.server.tasks.scheduler import schedule_columns
from lakeport.server.tasks.sealed import (
    PART,
    is_sealed,
    kept_problem,
    needs_sealing,
    seal_configuration,
)
from lakeport.server.tasks.tables import links, tasks, versions
from lakeport.tasks.bundle import check_zip
from lakeport.tasks.schedule import parse_schedule
from lakeport.tasks.spec import TaskSpec, check_name, parse_spec

router = APIRouter(tags=["tasks"])
PARTS = ("executable", "dependencies", "inputs")
_ZIPS = {"dependencies": "the dependencies zip", "inputs": "the input zip"}


class LinkIn(BaseModel):
    """A file of another task's latest successful run, put in this task's ``in/``: the seed's
    ``externalFileLinking(projectIds, taskIds, fileNames)``."""

    model_config = ConfigDict(extra="forbid")

    project: str
    task: str
    file: str = Field(min_length=1, max_length=1024)


class LinksIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    links: list[LinkIn] = Field(max_length=1000)


class CopyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    project: str | None = None


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule: dict[str, Any]


async def _spooled(upload: UploadFile, folder: Path, part: str) -> Path:
    path = folder / part
    with path.open("wb") as out:
        await asyncio.to_thread(shutil.copyfileobj, upload.file, out, CHUNK)
    return path


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while data := await asyncio.to_thread(handle.read, CHUNK):
            yield data


def _entry_problem(entry: str, executable: str | None, members: list[str]) -> str | None:
    if entry == executable or entry in members:
        return None
    where = [f"executable {executable!r}"] if executable else []
    if members:
        shown = ", ".join(members[:5]) + (", ..." if len(members) > 5 else "")
        where.append(f"dependencies zip ({shown})")
    return (f"entry point {entry!r} is not in the bundle: it has "
            f"{' and '.join(where) or 'no executable and no dependencies zip'}")


async def _links(conn: AsyncConnection, task_id: int) -> list[dict[str, str]]:
    rows = await conn.execute(sa.select(links).where(links.c.task_id == task_id)
                              .order_by(links.c.id))
    return [{"project": r.source_project, "task": r.source_task, "file": r.file_name}
            for r in rows]


async def _executable(conn: AsyncConnection, task: Any) -> str | None:
    return (await conn.execute(sa.select(versions.c.executable).where(
        versions.c.task_id == task.id, versions.c.version == task.version))).scalar()


@router.put("/tasks/projects/{project}/tasks/{task}", status_code=201,
            summary="Deploy a task: its settings (spec, JSON) and bundle (executable, "
                    "dependencies zip, input zip); overwrite=true makes a new version")
async def deploy(project: str, task: str, request: Request,
                 spec: str = Form(..., description="the task's settings as JSON"),
                 executable: UploadFile | None = File(None),
                 dependencies: UploadFile | None = File(None),
                 inputs: UploadFile | None = File(None),
                 overwrite: bool = False, user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> JSONResponse:
    check_name(task, "task")
    try:
        settings = parse_spec(orjson.loads(spec))
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"bad task: spec is not JSON ({exc})") from None
    uploads = {"executable": executable, "dependencies": dependencies, "inputs": inputs}
    async with store.connect() as conn:
        project_row = await conn.run_sync(project_access, user, project, Level.WRITE, "deploy to")
        old = (await conn.execute(sa.select(tasks).where(
            tasks.c.project_id == project_row.id, tasks.c.name == task))).first()
        if old is not None and not overwrite:
            raise Conflict(f"task {task!r} exists in project {project!r}: deploy with "
                           "overwrite to replace its code (a new version)")
        previous = None if old is None else (await conn.execute(sa.select(versions).where(
            versions.c.task_id == old.id, versions.c.version == old.version))).first()
    parts = orjson.loads(previous.parts) if previous is not None else {}
    executable_name = previous.executable if previous is not None else None
    if executable is not None:
        executable_name = Path(executable.filename or "").name or None
        if executable_name is None:
            raise Invalid("bad task: the executable has no file name")
    sealed = needs_sealing(settings.runtime, settings.entry, executable_name)
    lake = request.app.state.files_lake
    fresh: dict[str, Any] = {}
    members: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lakeport-deploy-") as folder:
        for part, upload in uploads.items():
            if upload is None:
                continue
            path = await _spooled(upload, Path(folder), part)
            sealing = sealed and part == PART
            if sealing:
                await asyncio.to_thread(seal_configuration, path, executable_name or part)
            if part in _ZIPS:
                names = await asyncio.to_thread(check_zip, path, what=_ZIPS[part])
                if part == "dependencies":
                    members = names
            stored = await put_object(lake, _file_chunks(path))
            fresh[part] = {"key": stored.key, "size": stored.size, "sha256": stored.sha256}
            if sealing:
                fresh[part]["sealed"] = True
    if "dependencies" not in fresh and "dependencies" in parts and previous is not None:
        members = orjson.loads(previous.parts)["dependencies"].get("members", [])
    if "dependencies" in fresh:
        fresh["dependencies"]["members"] = members[:10_000]
    entry = settings.entry or executable_name
    problem = "bad task: no entry point: give spec.entry or an executable" if entry is None \
        else _entry_problem(entry, executable_name, members)
    if not problem and sealed and executable is None:
        problem = kept_problem(parts, executable_name or PART)
    if problem:
        await lake.delete(*(part["key"] for part in fresh.values()))
        raise Invalid(problem)
    parts.update(fresh)
    now = now_ms()
    try:
        record = await _save(store, project_row, task, old, settings, executable_name, parts,
                             now)
    except BaseException:
        await lake.delete(*(part["key"] for part in fresh.values()))
        raise
    return JSONResponse(record, 201 if old is None else 200)


async def _save(store: Store, project_row: Any, name: str, old: Any, settings: TaskSpec,
                executable: str | None, parts: dict[str, Any], now: int) -> dict[str, Any]:
    values = {"runtime": settings.runtime, "spec": settings.model_dump_json(),
              "updated_ms": now, **schedule_columns(settings, now)}
    async with store.begin() as conn:
        if old is None:
            task_id = (await conn.execute(tasks.insert().values(
                project_id=project_row.id, name=name, version=1, created_ms=now, **values))
            ).inserted_primary_key[0]
            version = 1
        else:
            version = old.version + 1
            changed = await conn.execute(tasks.update().where(
                tasks.c.id == old.id, tasks.c.version == old.version).values(
                version=version, **values))
            if changed.rowcount != 1:
                raise Conflict(f"task {name!r} was deployed at the same time: try again")
            task_id = old.id
        await conn.execute(versions.insert().values(
            task_id=task_id, version=version, executable=executable,
            parts=orjson.dumps(parts).decode(), created_ms=now))
        row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).one()
        return task_record(project_row.name, row, await _links(conn, task_id), executable)


@router.get("/tasks/projects/{project}/tasks", summary="Tasks of a project")
async def list_tasks(project: str, user: User = Depends(current_user),
                     store: Store = Depends(get_store)) -> JSONResponse:
    async with store.connect() as conn:
        row = await conn.run_sync(project_access, user, project, Level.READ, "read")
        rows = (await conn.execute(sa.select(tasks).where(
            tasks.c.project_id == row.id, tasks.c.instance_id.is_(None))  # not a workflow's
            .order_by(tasks.c.name))).all()
    return JSONResponse({"items": [task_record(project, r) for r in rows], "next_cursor": None})


@router.get("/tasks/projects/{project}/tasks/{task}", summary="A task with its links")
async def get_task(project: str, task: str, user: User = Depends(current_user),
                   store: Store = Depends(get_store)) -> JSONResponse:
    async with store.connect() as conn:
        _, row = await conn.run_sync(task_access, user, project, task, Level.READ, "read")
        return JSONResponse(task_record(project, row, await _links(conn, row.id),
                                        await _executable(conn, row)))


@router.delete("/tasks/projects/{project}/tasks/{task}", status_code=204,
               response_class=Response, summary="Delete a task and its runs")
async def delete_task(project: str, task: str, request: Request,
                      user: User = Depends(current_user),
                      store: Store = Depends(get_store)) -> Response:
    async with store.begin() as conn:
        _, row = await conn.run_sync(task_access, user, project, task, Level.ADMIN, "delete")
        keys = await bundle_keys(conn, sa.select(sa.literal(row.id)))
        await conn.execute(tasks.delete().where(tasks.c.id == row.id))
    await request.app.state.files_lake.delete(*keys)
    return Response(status_code=204)


@router.patch("/tasks/projects/{project}/tasks/{task}/schedule",
              summary="Reschedule: a new time or cron pattern (the run count starts again)")
async def reschedule(project: str, task: str, body: ScheduleIn,
                     user: User = Depends(current_user),
                     store: Store = Depends(get_store)) -> JSONResponse:
    schedule = parse_schedule(body.schedule)
    now = now_ms()
    async with store.begin() as conn:
        _, row = await conn.run_sync(task_access, user, project, task, Level.WRITE, "reschedule")
        spec = TaskSpec.model_validate_json(row.spec).model_copy(update={"schedule": schedule})
        await conn.execute(tasks.update().where(tasks.c.id == row.id).values(
            spec=spec.model_dump_json(), updated_ms=now, **schedule_columns(spec, now)))
        row = (await conn.execute(sa.select(tasks).where(tasks.c.id == row.id))).one()
        return JSONResponse(task_record(project, row, await _links(conn, row.id)))


@router.post("/tasks/projects/{project}/tasks/{task}/copy", status_code=201,
             summary="Copy a task (code, settings, links) under a new name")
async def copy_task(project: str, task: str, body: CopyIn, user: User = Depends(current_user),
                    store: Store = Depends(get_store)) -> JSONResponse:
    name = check_name(body.name, "task")
    target_project = body.project or project
    now = now_ms()

    def copy(conn: Connection) -> dict[str, Any]:
        _, source = task_access(conn, user, project, task, Level.READ, "copy")
        target = project_access(conn, user, target_project, Level.WRITE, "deploy to")
        if conn.execute(sa.select(tasks.c.id).where(
                tasks.c.project_id == target.id, tasks.c.name == name)).first():
            raise Conflict(f"task {name!r} exists in project {target_project!r}")
        version = conn.execute(sa.select(versions).where(
            versions.c.task_id == source.id, versions.c.version == source.version)).one()
        if any(is_sealed(part) for part in orjson.loads(version.parts).values()):
            # sealed parameters open for the copy's code: only for who may deploy the source's
            task_access(conn, user, project, task, Level.WRITE, "copy (its configuration is "
                        "sealed)")
        spec = TaskSpec.model_validate_json(source.spec)
        copy_id = conn.execute(tasks.insert().values(
            project_id=target.id, name=name, version=1, runtime=source.runtime,
            spec=source.spec, created_ms=now, updated_ms=now, **schedule_columns(spec, now))
        ).inserted_primary_key[0]
        conn.execute(versions.insert().values(
            task_id=copy_id, version=1, executable=version.executable,
            parts=version.parts, created_ms=now))  # the same lake objects
        copied_links = [{"task_id": copy_id, "source_project": link.source_project,
                         "source_task": link.source_task, "file_name": link.file_name,
                         "target": link.target}
                        for link in conn.execute(sa.select(links).where(
                            links.c.task_id == source.id).order_by(links.c.id))]
        if copied_links:
            conn.execute(links.insert(), copied_links)
        copied = conn.execute(sa.select(tasks).where(tasks.c.id == copy_id)).one()
        return task_record(target_project, copied, [
            {"project": link["source_project"], "task": link["source_task"],
             "file": link["file_name"]} for link in copied_links], version.executable)

    return JSONResponse(await store.transact(copy), 201)


@router.put("/tasks/projects/{project}/tasks/{task}/links",
            summary="Set the files linked into the task's in/ from other tasks' outputs")
async def set_links(project: str, task: str, body: LinksIn,
                    user: User = Depends(current_user),
                    store: Store = Depends(get_store)) -> JSONResponse:
    async with store.begin() as conn:
        _, row = await conn.run_sync(task_access, user, project, task, Level.WRITE, "link files to")
        for link in body.links:
            await conn.run_sync(task_access, user, link.project, link.task, Level.READ, "link from")
            if "/" in link.file.strip("/") or link.file in (".", ".."):
                raise Invalid(f"bad link file {link.file!r}: name one file of the task's out/")
        names = [link.file for link in body.links]
        if len(set(names)) != len(names):
            raise Invalid("two links bring files of the same name into in/")
        await conn.execute(links.delete().where(links.c.task_id == row.id))
        for link in body.links:
            await conn.execute(links.insert().values(
                task_id=row.id, source_project=link.project, source_task=link.task,
                file_name=link.file, target=link.file))
        return JSONResponse({"items": await _links(conn, row.id), "next_cursor": None})


__all__ = ["router"]
