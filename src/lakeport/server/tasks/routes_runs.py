"""Routes on runs: start a task, pause, resume and stop a run, run history (paged), one run
with its attempts and transitions, and its logs (``follow`` streams them while it runs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from starlette.responses import StreamingResponse

from lakeport.errors import NotFound
from lakeport.server.access import Level
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.paging import Cursor, Id, Limit, decode_cursor, encode_cursor
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User
from lakeport.server.tasks import logs, service
from lakeport.server.tasks.access import run_access, task_access
from lakeport.server.tasks.filing import log_path
from lakeport.server.tasks.lakefiles import file_object
from lakeport.server.tasks.records import attempt_record, event_record, run_record
from lakeport.server.tasks.tables import attempts, events, runs, workers
from lakeport.tasks.spec import RUN_STATES

router = APIRouter(tags=["tasks"])
WORKER_SEEN_MS = 60_000
"""A worker that has not asked for work for this long no longer counts as offering its
runtimes."""


class StartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, str] = Field(default_factory=dict)


_SEEN_WORKERS = sa.select(workers.c.runtimes).where(workers.c.seen_ms >= sa.bindparam("since"))


def _reasons(seen: Sequence[str], runtimes: set[str]) -> dict[str, str]:
    offered = {name for text in seen for name in text.split(",") if name}
    return {name: f"no worker offers runtime {name!r}" + ("" if seen else " (no worker is "
                                                          "connected: start lakeport worker)")
            for name in runtimes - offered}


async def waiting_reasons(conn: Any, runtimes: set[str], now: int) -> dict[str, str]:
    """Why queued runs of each runtime wait, when no live worker offers it."""
    seen = (await conn.execute(_SEEN_WORKERS, {"since": now - WORKER_SEEN_MS})).scalars()
    return _reasons(seen.all(), runtimes)


@router.post("/tasks/projects/{project}/tasks/{task}/start", status_code=201,
             summary="Start a run now, with parameters (LAKEPORT_PARAM_<NAME> in its "
                     "environment)")
async def start(project: str, task: str, request: Request, body: StartIn | None = None,
                user: User = Depends(current_user),
                store: Store = Depends(get_store)) -> JSONResponse:
    now = now_ms()
    parameters = (body or StartIn()).parameters

    def queue(conn: Connection) -> tuple[Any, str | None]:
        _, row = task_access(conn, user, project, task, Level.WRITE, "start")
        run_id = service.queue_run(conn, store.dialect, row, "manual", now,
                                   parameters=parameters)
        run = service.run_of(conn, run_id)
        seen = conn.execute(_SEEN_WORKERS, {"since": now - WORKER_SEEN_MS}).scalars().all()
        return run, _reasons(seen, {run.runtime}).get(run.runtime)

    run, waiting = await store.transact(queue)
    request.app.state.tasks_wakeup.notify()
    return JSONResponse(run_record(run, project, task, waiting), 201)


@router.post("/tasks/runs/{run_id}/{action}", summary="Pause, resume or stop a run")
async def control(run_id: Id, action: Literal["pause", "resume", "stop"], request: Request,
                  user: User = Depends(current_user),
                  store: Store = Depends(get_store)) -> JSONResponse:
    def act(conn: Connection) -> tuple[Any, Any, Any, int]:
        project_row, task_row, run = run_access(conn, user, run_id, Level.WRITE, action)
        run = service.control(conn, run, action, now_ms())
        return project_row, task_row, run, service.queued_by_hooks(conn)

    project_row, task_row, run, queued = await store.transact(act)
    if run.state == "queued" or queued:
        request.app.state.tasks_wakeup.notify(max(queued, 1))
    return JSONResponse(run_record(run, project_row.name, task_row.name))


@router.get("/tasks/projects/{project}/tasks/{task}/runs",
            summary="Run history of a task, newest first")
async def list_runs(project: str, task: str,
                    state: list[str] | None = Query(None, description=", ".join(RUN_STATES)),
                    limit: Limit = 100, cursor: Cursor = None,
                    user: User = Depends(current_user),
                    store: Store = Depends(get_store)) -> JSONResponse:
    before = decode_cursor(cursor)
    now = now_ms()
    async with store.connect() as conn:
        _, row = await conn.run_sync(task_access, user, project, task, Level.READ, "read")
        query = sa.select(runs).where(runs.c.task_id == row.id)
        if state:
            query = query.where(runs.c.state.in_(state))
        if isinstance(before, int):
            query = query.where(runs.c.id < before)
        rows = (await conn.execute(query.order_by(runs.c.id.desc()).limit(limit + 1))).all()
        queued = {r.runtime for r in rows if r.state == "queued"}
        reasons = await waiting_reasons(conn, queued, now) if queued else {}
    items = [run_record(r, project, task, reasons.get(r.runtime) if r.state == "queued"
                        else None) for r in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return JSONResponse({"items": items, "next_cursor": next_cursor})


@router.get("/tasks/runs/{run_id}", summary="A run with its attempts and transitions")
async def get_run(run_id: Id, user: User = Depends(current_user),
                  store: Store = Depends(get_store)) -> JSONResponse:
    async with store.connect() as conn:
        project_row, task_row, run = await conn.run_sync(run_access, user, run_id, Level.READ,
                                                         "read")
        tries = (await conn.execute(sa.select(attempts).where(attempts.c.run_id == run_id)
                                    .order_by(attempts.c.number))).all()
        history = (await conn.execute(sa.select(events).where(events.c.run_id == run_id)
                                      .order_by(events.c.id))).all()
        waiting = (await waiting_reasons(conn, {run.runtime}, now_ms())).get(run.runtime) \
            if run.state == "queued" else None
    record = run_record(run, project_row.name, task_row.name, waiting)
    record["attempt_list"] = [attempt_record(a) for a in tries]
    record["events"] = [event_record(e) for e in history]
    return JSONResponse(record)


@router.get("/tasks/runs/{run_id}/logs", summary="A run's stdout or stderr (the latest "
                                                 "attempt unless attempt= names one); "
                                                 "server-sent events with Accept: "
                                                 "text/event-stream")
async def get_logs(run_id: Id, request: Request,
                   stream: Literal["stdout", "stderr"] = "stdout",
                   attempt: int | None = Query(None, ge=1, le=1_000_000),
                   follow: bool = Query(False, description="keep the response open and send "
                                        "what the run prints until its attempt ends"),
                   user: User = Depends(current_user),
                   store: Store = Depends(get_store)) -> StreamingResponse:
    async with store.connect() as conn:
        project_row, task_row, _ = await conn.run_sync(run_access, user, run_id, Level.READ, "read")
        query = sa.select(attempts).where(attempts.c.run_id == run_id)
        query = query.where(attempts.c.number == attempt) if attempt else \
            query.order_by(attempts.c.number.desc()).limit(1)
        row = (await conn.execute(query)).first()
        if row is None and attempt:
            raise NotFound(f"run {run_id} has no attempt {attempt}")
        _, end = (0, 0) if row is None else await logs.stream_end(conn, row.id, stream)
        filed = None if row is None or end else await file_object(
            conn, log_path(project_row.name, task_row.name, run_id, row.number, stream))
    if filed is not None:
        body = await request.app.state.files_lake.read(filed.object_key)
    else:
        body = _follow(store, run_id, row.id if row else None, stream, follow)
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_events(body), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    return StreamingResponse(body, media_type="text/plain; charset=utf-8")


async def _events(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A log as server-sent events: a ``log`` event per line (``data:`` its text, without
    the newline), then an ``end`` event."""
    pending = b""
    async for chunk in body:
        *lines, pending = (pending + chunk).split(b"\n")
        if lines:
            yield b"".join(b"event: log\ndata: " + line.replace(b"\r", b"") + b"\n\n"
                           for line in lines)
    if pending:
        yield b"event: log\ndata: " + pending.replace(b"\r", b"") + b"\n\n"
    yield b"event: end\ndata: \n\n"


async def _follow(store: Store, run_id: int, attempt_id: int | None, stream: str,
                  follow: bool, poll: float = 0.2) -> AsyncIterator[bytes]:
    """The stored chunks of a stream from the start; with ``follow``, then what arrives
    until the attempt has ended (waiting for the run's first attempt if need be)."""
    offset = 0
    while True:
        async with store.connect() as conn:
            if attempt_id is None:
                attempt_id = (await conn.execute(sa.select(attempts.c.id).where(
                    attempts.c.run_id == run_id).order_by(attempts.c.number.desc()))).scalar()
                state = (await conn.execute(sa.select(runs.c.state).where(
                    runs.c.id == run_id))).scalar()
                ended = state is None or state in ("succeeded", "failed", "cancelled", "lost")
            else:
                state = (await conn.execute(sa.select(attempts.c.state).where(
                    attempts.c.id == attempt_id))).scalar()
                ended = state is None or state not in service.LIVE
            if attempt_id is not None:
                data, first, end = await logs.read(conn, attempt_id, stream, offset)
                if data:
                    yield logs.with_cut_marker(data, first) if first > offset else data
                offset = end
        if not follow or ended:
            return
        await asyncio.sleep(poll)


__all__ = ["WORKER_SEEN_MS", "router", "waiting_reasons"]
