"""Logs per attempt: stdout and stderr arrive from the worker in chunks at byte offsets, are
kept in the store while the attempt runs (so a follower sees them, and a killed worker's
partial logs stay), capped to the last ``LOG_CAP`` bytes of each stream, and written to the
lake as ``attempt-<n>/stdout.log`` / ``stderr.log`` of the run's folder when it ends."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Conflict, Invalid
from lakeport.server.tasks.tables import attempts, logs

LOG_CAP = 16 << 20
"""Bytes of each stream kept per attempt (the tail: the start goes first)."""
STREAMS = ("stdout", "stderr")


def check_stream(stream: str) -> str:
    if stream not in STREAMS:
        raise Invalid(f"bad log stream {stream!r}: use stdout or stderr")
    return stream


def _bounds(attempt_id: int, stream: str) -> sa.Select:
    """(first kept offset, end offset) of a stream, NULLs when it is empty."""
    return sa.select(
        sa.func.min(logs.c.offset), sa.func.max(logs.c.offset + sa.func.length(logs.c.data))
    ).where(logs.c.attempt_id == attempt_id, logs.c.stream == stream)


async def stream_end(conn: AsyncConnection, attempt_id: int, stream: str) -> tuple[int, int]:
    """(first kept offset, end offset) of a stream; (0, 0) when empty."""
    row = (await conn.execute(_bounds(attempt_id, stream))).one()
    return int(row[0] or 0), int(row[1] or 0)


def append(conn: Connection, attempt_id: int, stream: str, offset: int, data: bytes,
           cap: int = LOG_CAP) -> int:
    """Add ``data`` found at ``offset`` of the stream; bytes already stored are skipped (a
    worker's retry is harmless). The stream's end offset after it."""
    # one append of an attempt at a time: the no-op update locks the attempt's row (and
    # takes SQLite's write lock) before the end is read
    conn.execute(attempts.update().where(attempts.c.id == attempt_id).values(
        id=attempts.c.id))
    end = int(conn.execute(_bounds(attempt_id, stream)).one()[1] or 0)
    if offset > end:
        raise Conflict(f"log {stream} of attempt {attempt_id} ends at byte {end}, not {offset}: "
                       "send from there")
    fresh = data[end - offset:]
    if not fresh:
        return end
    conn.execute(logs.insert().values(attempt_id=attempt_id, stream=stream, offset=end,
                                      data=fresh))
    end += len(fresh)
    if end > cap:  # keep the tail: drop what lies before it, and cut the chunk across it
        boundary = end - cap
        mine = (logs.c.attempt_id == attempt_id) & (logs.c.stream == stream)
        conn.execute(logs.delete().where(
            mine, logs.c.offset + sa.func.length(logs.c.data) <= boundary))
        across = conn.execute(sa.select(logs.c.id, logs.c.offset, logs.c.data).where(
            mine, logs.c.offset < boundary)).first()
        if across is not None:
            conn.execute(logs.update().where(logs.c.id == across.id).values(
                offset=boundary, data=bytes(across.data)[boundary - across.offset:]))
    return end


async def read(conn: AsyncConnection, attempt_id: int, stream: str, start: int = 0
               ) -> tuple[bytes, int, int]:
    """(bytes from ``start`` on, the offset they start at, the end offset). Bytes dropped by
    the cap are skipped (the returned start is then later than asked)."""
    rows = (await conn.execute(sa.select(logs.c.offset, logs.c.data).where(
        logs.c.attempt_id == attempt_id, logs.c.stream == stream,
        logs.c.offset + sa.func.length(logs.c.data) > start).order_by(logs.c.offset))).all()
    if not rows:  # (not the stream's end: a chunk stored since the query would be skipped)
        return b"", start, start
    first = max(start, rows[0].offset)
    data = b"".join(bytes(row.data) for row in rows)[first - rows[0].offset:]
    return data, first, first + len(data)


def with_cut_marker(data: bytes, first: int) -> bytes:
    """``data`` prefixed with a line saying how many bytes before it were cut."""
    if first <= 0:
        return data
    return f"[lakeport: the first {first} bytes of this log were cut]\n".encode() + data


async def whole(conn: AsyncConnection, attempt_id: int, stream: str) -> bytes:
    """A stream as it goes to the lake: the kept tail, with a marker when cut."""
    data, first, _ = await read(conn, attempt_id, stream)
    return with_cut_marker(data, first)


async def drop(conn: AsyncConnection, attempt_id: int) -> None:
    """Forget the chunks of an attempt once its logs are in the lake."""
    await conn.execute(logs.delete().where(logs.c.attempt_id == attempt_id))


__all__ = ["LOG_CAP", "STREAMS", "append", "check_stream", "drop", "read", "stream_end",
           "whole", "with_cut_marker"]
