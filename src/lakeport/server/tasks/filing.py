"""Filing the logs of ended attempts into the lake (``attempt-<n>/stdout.log`` and
``stderr.log`` in the run's folder; a stream the task never wrote to leaves no file), whether
the attempt finished, failed or was lost, and
forgetting their chunks in the store :data:`KEEP_CHUNKS_MS` later (followers read them until
then)."""

from __future__ import annotations

import sqlalchemy as sa

from lakeport.server.files.lake import Lake
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User
from lakeport.server.tasks import logs
from lakeport.server.tasks.lakefiles import chunks_of, run_folder, save_run_file
from lakeport.server.tasks.service import LIVE
from lakeport.server.tasks.tables import attempts, projects, runs, tasks
from lakeport.server.tasks.tables import logs as log_chunks

KEEP_CHUNKS_MS = 10 * 60 * 1000


def log_path(project: str, task: str, run_id: int, number: int, stream: str) -> str:
    return f"{run_folder(project, task, run_id)}/attempt-{number}/{stream}.log"


async def file_logs(store: Store, lake: Lake, system: User, limit: int = 100) -> int:
    """File the logs of up to ``limit`` ended attempts; the number filed."""
    pending_attempts = (attempts.c.logs_filed.is_(False), attempts.c.state.not_in(LIVE))
    has_chunks = sa.exists().where(log_chunks.c.attempt_id == attempts.c.id)
    async with store.begin() as conn:  # nothing to file: one statement for all of them
        await conn.execute(attempts.update().where(*pending_attempts, ~has_chunks).values(
            logs_filed=True))
    query = (sa.select(attempts.c.id, attempts.c.number, attempts.c.run_id,
                       tasks.c.name.label("task"), projects.c.name.label("project"))
             .join(runs, runs.c.id == attempts.c.run_id).join(tasks, tasks.c.id == runs.c.task_id)
             .join(projects, projects.c.id == tasks.c.project_id)
             .where(*pending_attempts).order_by(attempts.c.id).limit(limit))
    async with store.connect() as conn:
        pending = (await conn.execute(query)).all()
    for row in pending:
        for stream in logs.STREAMS:
            async with store.connect() as conn:
                data = await logs.whole(conn, row.id, stream)
            if not data:
                continue  # a stream the task never wrote to leaves no file
            await save_run_file(store, lake, system,
                                log_path(row.project, row.task, row.run_id, row.number, stream),
                                chunks_of(data), "text/plain; charset=utf-8")
        async with store.begin() as conn:
            await conn.execute(attempts.update().where(attempts.c.id == row.id).values(
                logs_filed=True))
    return len(pending)


async def forget_filed_chunks(store: Store) -> None:
    """Drop the chunks of attempts filed more than :data:`KEEP_CHUNKS_MS` ago."""
    async with store.begin() as conn:
        old = sa.select(attempts.c.id).where(attempts.c.logs_filed.is_(True),
                                             attempts.c.ended_ms < now_ms() - KEEP_CHUNKS_MS)
        await conn.execute(log_chunks.delete().where(log_chunks.c.attempt_id.in_(old)))


__all__ = ["KEEP_CHUNKS_MS", "file_logs", "forget_filed_chunks", "log_path"]
