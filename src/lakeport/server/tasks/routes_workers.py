"""Routes workers use (a worker key; docs/server/tasks.md): claim a run (long poll), fetch
its bundle and linked files, heartbeat, send its logs and output files, finish it once.

Everything after the claim names the attempt and carries its token (``x-attempt-token``
header or the body's ``token``): a worker reaches only the attempts it claimed, and an
attempt that was marked lost answers 410 so its process is stopped.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from starlette.responses import StreamingResponse

from lakeport.apps.secrets import SecretStore, resolve_secrets
from lakeport.errors import Invalid, NotFound
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.files.paths import check_path
from lakeport.server.paging import Id, Offset
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User
from lakeport.server.tasks import logs, service
from lakeport.server.tasks.access import require_worker
from lakeport.server.tasks.lakefiles import file_object, run_folder, save_run_file, system_user
from lakeport.server.tasks.sealed import is_sealed, opened
from lakeport.server.tasks.tables import links, projects, runs, tasks, versions
from lakeport.server.tasks.tables import workers as worker_table
from lakeport.server.tasks.wakeup import Wakeup

router = APIRouter(tags=["task workers"])
HEARTBEAT = 2.0
GRACE = 10.0
MAX_WAIT = 30.0
MAX_CLAIM = 100


class NextIn(BaseModel):
    """What a worker asks for: runs of its runtimes, as many as it has free slots."""

    model_config = ConfigDict(extra="forbid")

    worker: str = Field(min_length=1, max_length=200)
    runtimes: list[str] = Field(max_length=50)
    max: int = Field(1, ge=1, le=MAX_CLAIM, description="runs to claim at most (free slots)")


class ClaimIn(NextIn):
    wait: float = Field(10.0, ge=0, le=MAX_WAIT)


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str
    state: Literal["running", "paused"] = "running"
    pid: int | None = Field(None, ge=0, le=2**31 - 1)


class FinishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str
    outcome: Literal["succeeded", "failed", "cancelled"]
    exit_code: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    reason: str = Field("", max_length=10_000)
    claim: NextIn | None = Field(None, description="claim the worker's next runs in the same "
                                                   "request (no waiting; answered as "
                                                   "`attempts`)")


SEEN_EVERY_MS = 5_000
"""A worker's row is refreshed at most this often (its claims come every few seconds)."""


async def _see(request: Request, store: Store, user: User, body: NextIn, now: int) -> None:
    """Note that ``body.worker`` offers its runtimes (for the reason queued runs wait)."""
    runtimes = ",".join(sorted(set(body.runtimes)))
    seen: dict[str, tuple[int, str]] = request.app.state.tasks_workers_seen
    last = seen.get(body.worker)
    if last is not None and last[1] == runtimes and now - last[0] < SEEN_EVERY_MS:
        return
    if len(seen) > 10_000:
        seen.clear()
    seen[body.worker] = (now, runtimes)
    async with store.begin() as conn:
        changed = await conn.execute(worker_table.update().where(
            worker_table.c.name == body.worker).values(runtimes=runtimes, user_id=user.id,
                                                       seen_ms=now))
        if not changed.rowcount:
            try:
                async with conn.begin_nested():
                    await conn.execute(worker_table.insert().values(
                        name=body.worker, runtimes=runtimes, user_id=user.id, seen_ms=now))
            except sa.exc.IntegrityError:
                pass


@router.post("/tasks/claim", summary="Claim up to `max` queued runs (waits up to `wait` "
                                     "seconds for one; 204 when none came)")
async def claim(body: ClaimIn, request: Request, user: User = Depends(current_user),
                store: Store = Depends(get_store)) -> Response:
    require_worker(user)
    wakeup: Wakeup = request.app.state.tasks_wakeup
    deadline = time.monotonic() + body.wait
    lost_after = request.app.state.settings.task_lost_after
    await _see(request, store, user, body, now_ms())
    while True:
        ticket = wakeup.ticket()
        leaving = True  # returning without a run: a wake-up this ticket got goes on
        try:
            if await request.is_disconnected():  # the worker went away: claim nothing
                return Response(status_code=204)
            taken, records = await store.transact(lambda conn: _take(conn, store.dialect, body,
                                                                     lost_after))
            if records:
                leaving = False
                return JSONResponse({"attempts": records})
            if taken:  # each failed at once (a missing secret): look for others now
                leaving = False
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return Response(status_code=204)
            await wakeup.wait(ticket, min(left, wakeup.poll))
            leaving = False  # woken or polled: the next round looks for the run
        finally:
            wakeup.done(ticket, pass_on=leaving)


_VERSION = sa.select(versions).where(versions.c.task_id == sa.bindparam("task_id"),
                                     versions.c.version == sa.bindparam("version"))
_LINK_NAMES = sa.select(links.c.target).where(
    links.c.task_id == sa.bindparam("task_id")).order_by(links.c.id)


def _take(conn: Connection, dialect: str, body: NextIn, lost_after: float
          ) -> tuple[int, list[dict[str, Any]]]:
    """Claim runs for ``body``'s worker: (how many were claimed, the records of the attempts
    it is to run: those that could start)."""
    claimed = service.claim(conn, dialect, body.worker, body.runtimes, now_ms(), body.max)
    return len(claimed), [record for one in claimed
                          if (record := _attempt(conn, one, lost_after)) is not None]


def _attempt(conn: Connection, claimed: service.Claimed, lost_after: float
             ) -> dict[str, Any] | None:
    """What the worker needs to run a claimed attempt; None when the run cannot start (a
    secret that does not exist: the attempt fails with the reason)."""
    run, task = claimed.run, claimed.task
    spec = service.spec_of(task)
    try:
        env = {name: _resolved(value, name) for name, value in spec.env.items()}
    except Invalid as exc:
        service.finish(conn, claimed.attempt_id, claimed.token, "failed", None, str(exc),
                       now_ms())
        return None
    version = conn.execute(_VERSION, {"task_id": task.id, "version": run.version}).one()
    parts = orjson.loads(version.parts)
    link_names = conn.execute(_LINK_NAMES, {"task_id": task.id}).scalars().all()
    return {"id": claimed.attempt_id, "token": claimed.token, "run": run.id,
            "number": claimed.number, "project": task.project, "task": task.name,
            "version": run.version, "runtime": run.runtime,
            "entry": spec.entry or version.executable, "args": spec.args, "env": env,
            "parameters": orjson.loads(run.parameters), "timeout": spec.timeout,
            "limits": {"memory_mb": spec.memory_mb, "cpu_seconds": spec.cpu_seconds},
            "settings": spec.settings, "parts": sorted(parts),
            "sums": {name: part["sha256"] for name, part in parts.items()
                     if not is_sealed(part)},  # a sum: the worker caches the part
            "executable": version.executable, "links": list(link_names),
            "heartbeat": HEARTBEAT, "grace": GRACE, "lost_after": lost_after}


def _resolved(value: str, name: str) -> str:
    try:
        return resolve_secrets(value, SecretStore())
    except Exception as exc:  # a missing secret fails the run with the reason
        raise Invalid(f"environment variable {name}: {exc}") from None


async def _attempt_row(store: Store, user: User, attempt_id: int, token: str | None) -> Any:
    require_worker(user)
    return await store.transact(lambda conn: service.live_attempt(conn, attempt_id,
                                                                  token or ""))


async def _run_paths(store: Store, run_id: int) -> tuple[Any, Any, Any]:
    """(run, task, project name) of a run."""
    async with store.connect() as conn:
        run = (await conn.execute(sa.select(runs).where(runs.c.id == run_id))).one()
        task = (await conn.execute(sa.select(tasks).where(tasks.c.id == run.task_id))).one()
        project = (await conn.execute(sa.select(projects.c.name).where(
            projects.c.id == task.project_id))).scalar_one()
    return run, task, project


@router.get("/tasks/attempts/{attempt_id}/parts/{part}", summary="A part of the run's bundle")
async def get_part(attempt_id: Id, part: Literal["executable", "dependencies", "inputs"],
                   request: Request, token: str | None = Header(None, alias="x-attempt-token"),
                   user: User = Depends(current_user),
                   store: Store = Depends(get_store)) -> Response:
    attempt = await _attempt_row(store, user, attempt_id, token)
    run, task, _ = await _run_paths(store, attempt.run_id)
    async with store.connect() as conn:
        parts = orjson.loads((await conn.execute(sa.select(versions.c.parts).where(
            versions.c.task_id == task.id, versions.c.version == run.version))).scalar_one())
    if part not in parts:
        raise NotFound(f"the task has no {part}")
    body = await request.app.state.files_lake.read(parts[part]["key"])
    if is_sealed(parts[part]):
        return Response(await opened(body), media_type="application/octet-stream")
    return StreamingResponse(body, media_type="application/octet-stream",
                             headers={"Content-Length": str(parts[part]["size"])})


@router.get("/tasks/attempts/{attempt_id}/links/{name:path}",
            summary="A linked file: the newest successful run's out/<name> of the source task")
async def get_link(attempt_id: Id, name: str, request: Request,
                   token: str | None = Header(None, alias="x-attempt-token"),
                   user: User = Depends(current_user),
                   store: Store = Depends(get_store)) -> Response:
    attempt = await _attempt_row(store, user, attempt_id, token)
    run, _, _ = await _run_paths(store, attempt.run_id)
    async with store.connect() as conn:
        link = (await conn.execute(sa.select(links).where(
            links.c.task_id == run.task_id, links.c.target == name))).first()
        if link is None:
            raise NotFound(f"the task links no file {name!r}")
        source = (await conn.execute(
            sa.select(runs.c.id).join(tasks, tasks.c.id == runs.c.task_id)
            .join(projects, projects.c.id == tasks.c.project_id)
            .where(projects.c.name == link.source_project, tasks.c.name == link.source_task,
                   runs.c.state == "succeeded").order_by(runs.c.id.desc()).limit(50))
        ).scalars().all()
        found = None
        for source_run in source:
            folder = run_folder(link.source_project, link.source_task, source_run)
            found = await file_object(conn, f"{folder}/out/{link.file_name}")
            if found is not None:
                break
    if found is None:
        raise NotFound(f"no successful run of {link.source_project}/{link.source_task} left "
                       f"out/{link.file_name}")
    body = await request.app.state.files_lake.read(found.object_key)
    return StreamingResponse(body, media_type="application/octet-stream",
                             headers={"Content-Length": str(found.size)})


@router.post("/tasks/attempts/{attempt_id}/heartbeat",
             summary="The attempt's process is alive; answers the command to apply")
async def heartbeat(attempt_id: Id, body: HeartbeatIn, user: User = Depends(current_user),
                    store: Store = Depends(get_store)) -> JSONResponse:
    require_worker(user)
    command = await store.transact(lambda conn: service.heartbeat(
        conn, attempt_id, body.token, body.state, body.pid, now_ms()))
    return JSONResponse({"command": command})


@router.post("/tasks/attempts/{attempt_id}/logs/{stream}",
             summary="Append output of the attempt's process at a byte offset")
async def append_log(attempt_id: Id, stream: Literal["stdout", "stderr"], request: Request,
                     offset: Offset = 0, token: str | None = Header(None, alias="x-attempt-token"),
                     user: User = Depends(current_user),
                     store: Store = Depends(get_store)) -> JSONResponse:
    require_worker(user)
    data = await request.body()
    cap = request.app.state.settings.task_log_cap

    def add(conn: Connection) -> int:
        service.live_attempt(conn, attempt_id, token or "")
        return logs.append(conn, attempt_id, stream, offset, data, cap)

    return JSONResponse({"end": await store.transact(add)})


@router.put("/tasks/attempts/{attempt_id}/out/{path:path}", status_code=201,
            summary="Store an output file of the run (tasks/<project>/<task>/<run>/out/<path>)")
async def put_output(attempt_id: Id, request: Request,
                     path: str = Path(..., description="relative path under out/"),
                     token: str | None = Header(None, alias="x-attempt-token"),
                     user: User = Depends(current_user),
                     store: Store = Depends(get_store)) -> JSONResponse:
    attempt = await _attempt_row(store, user, attempt_id, token)
    run, task, project = await _run_paths(store, attempt.run_id)
    full = check_path(f"{run_folder(project, task.name, run.id)}/out/{path}")
    system = await system_user(request)
    info = await save_run_file(store, request.app.state.files_lake, system, full,
                               request.stream())
    return JSONResponse(info, 201)


@router.post("/tasks/attempts/{attempt_id}/finish", summary="End the attempt (once)")
async def finish(attempt_id: Id, body: FinishIn, request: Request,
                 user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> JSONResponse:
    require_worker(user)
    lost_after = request.app.state.settings.task_lost_after
    if body.claim is not None:
        await _see(request, store, user, body.claim, now_ms())

    def end(conn: Connection) -> tuple[Any, list[dict[str, Any]], int]:
        run = service.finish(conn, attempt_id, body.token, body.outcome, body.exit_code,
                             body.reason, now_ms())
        queued = service.queued_by_hooks(conn)  # a workflow's next nodes
        nexts = [] if body.claim is None else _take(conn, store.dialect, body.claim,
                                                    lost_after)[1]
        return run, nexts, queued

    run, nexts, queued = await store.transact(end)
    if run.state == "queued" and run.not_before_ms <= now_ms():
        queued += 1
    if queued > len(nexts):  # more than this worker took: wake the others
        request.app.state.tasks_wakeup.notify(queued)
    answer: dict[str, Any] = {"run": {"id": run.id, "state": run.state}}
    if body.claim is not None:
        answer["attempts"] = nexts
    return JSONResponse(answer)


__all__ = ["GRACE", "HEARTBEAT", "router"]
