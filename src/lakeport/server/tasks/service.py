"""The run state machine, callable without HTTP.

``queued → running → succeeded | failed | cancelled | lost``, plus ``paused``. A run is
claimed by one worker at a time as an *attempt* (a number and a secret token); the worker
heartbeats, reports its process's state, and finishes the attempt once. A failed or lost
attempt is retried while the task's ``retries.count`` allows, after an exponential backoff
with jitter. Every transition is a row of ``task_events``. Each function runs inside the
caller's transaction: plain synchronous SQLAlchemy, run through
:meth:`~lakeport.server.store.Store.transact` (one hop to the store per request).
"""

from __future__ import annotations

import functools
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.errors import Closed, Conflict
from lakeport.server.store import insert_ignore
from lakeport.server.tasks.tables import attempts, events, projects, runs, tasks
from lakeport.tasks.spec import ENDED, TaskSpec

LIVE = ("running", "paused")

# The hot paths' statements, built once: building and hashing a statement costs more than
# SQLite running it (parameters are bound at execution).
_bind = sa.bindparam
_RUN = sa.select(runs).where(runs.c.id == _bind("run_id"))
_TASK = sa.select(tasks).where(tasks.c.id == _bind("task_id"))
_ATTEMPT = sa.select(attempts).where(attempts.c.id == _bind("attempt_id"))
_EVENT = events.insert()
_NEW_RUN = runs.insert().returning(runs.c.id)
_NEW_ATTEMPTS = attempts.insert().returning(attempts.c.id, sort_by_parameter_order=True)
_TASKS_OF = (sa.select(tasks, projects.c.name.label("project"))
             .join(projects, projects.c.id == tasks.c.project_id)
             .where(tasks.c.id.in_(_bind("task_ids", expanding=True))))
def _taking(picked: sa.CTE) -> sa.Update:
    return (runs.update().where(runs.c.id == picked.c.id, runs.c.state == "queued")
            .values(state="running", attempts=runs.c.attempts + 1, reason="",
                    updated_ms=_bind("now")).returning(*runs.c))


def _queue_head(*runtimes: str) -> sa.Select:
    """The oldest claimable runs of ``runtimes`` (the index ``ix_task_runs_queue`` yields
    them in order for one runtime; for several it sorts every queued run of them)."""
    return (sa.select(runs.c.id, runs.c.not_before_ms)
            .where(runs.c.state == "queued",
                   runs.c.runtime == runtimes[0] if len(runtimes) == 1
                   else runs.c.runtime.in_(runtimes),
                   runs.c.not_before_ms <= _bind("now"))
            .order_by(runs.c.not_before_ms, runs.c.id).limit(_bind("most")))


@functools.lru_cache(maxsize=256)
def _take(dialect: str, runtimes: tuple[str, ...]) -> sa.Update:
    """The statement claiming up to ``most`` runs of ``runtimes``: the runs are picked in a
    CTE, evaluated once (PostgreSQL may run an ``IN (subquery)`` with LIMIT and SKIP LOCKED
    more than once, and so take more runs than asked for). On SQLite each runtime's head of
    the queue is read from the index and the heads are merged, so a claim costs the same
    however many runs wait."""
    if dialect == "postgresql":
        return _taking(_queue_head(*runtimes).with_for_update(skip_locked=True).cte("picked"))
    heads = sa.union_all(*(sa.select(head.c.id, head.c.not_before_ms)
                           for head in (_queue_head(name).subquery() for name in runtimes)))
    merged = heads.subquery()
    return _taking(sa.select(merged.c.id).order_by(merged.c.not_before_ms, merged.c.id)
                   .limit(_bind("most")).cte("picked"))


_BEAT = attempts.update().where(attempts.c.id == _bind("attempt_id"),
                                attempts.c.state.in_(LIVE)).values(
    heartbeat_ms=_bind("now"), state=_bind("new_state"),
    pid=sa.func.coalesce(_bind("new_pid", type_=sa.Integer), attempts.c.pid))
_END_ATTEMPT = attempts.update().where(attempts.c.id == _bind("attempt_id"),
                                       attempts.c.state.in_(LIVE)).values(
    state=_bind("outcome"), exit_code=_bind("code", type_=sa.Integer), reason=_bind("why"),
    ended_ms=_bind("now"))
_ON_ATTEMPT = ((runs.c.id == _bind("run_id")) & runs.c.state.in_(LIVE)
               & (runs.c.attempts == _bind("number")))
_RETRY = runs.update().where(_ON_ATTEMPT).values(
    state="queued", not_before_ms=_bind("not_before"), reason=_bind("why"),
    updated_ms=_bind("now"))
_END_RUN = runs.update().where(_ON_ATTEMPT).values(
    state=_bind("new_state"), reason=_bind("why"), updated_ms=_bind("now"),
    ended_ms=_bind("ended")).returning(*runs.c)


RunEnded = Callable[[Connection, Any, int], int]
"""Called in the transaction that ends a run, with the ended run's row and the time; returns
how many runs it queued (a workflow's next nodes)."""
_RUN_ENDED: list[RunEnded] = []
_QUEUED = "lakeport.runs_queued"


def on_run_end(hook: RunEnded) -> None:
    """Call ``hook`` whenever a run ends (succeeded, failed, cancelled or lost), inside the
    transaction that ends it."""
    if hook not in _RUN_ENDED:
        _RUN_ENDED.append(hook)


def _ended(conn: Connection, run: Any, now: int) -> None:
    queued = sum(hook(conn, run, now) for hook in _RUN_ENDED)
    if queued:
        conn.info[_QUEUED] = conn.info.get(_QUEUED, 0) + queued


def queued_by_hooks(conn: Connection) -> int:
    """How many runs the hooks queued in this transaction (taken: asked once)."""
    return int(conn.info.pop(_QUEUED, 0))


@dataclass(frozen=True)
class Claimed:
    """A run a worker claimed: the run, its task (with ``project``, its project's name) and
    the new attempt."""

    run: Any
    task: Any
    attempt_id: int
    number: int
    token: str


def run_of(conn: Connection, run_id: int) -> Any:
    """The run's row."""
    return conn.execute(_RUN, {"run_id": run_id}).one()


def spec_of(task_row: Any) -> TaskSpec:
    return _spec(task_row.spec)


@functools.lru_cache(maxsize=1024)
def _spec(text: str) -> TaskSpec:
    return TaskSpec.model_validate_json(text)


def add_event(conn: Connection, run_id: int, state: str, now: int,
              detail: str = "", attempt: int | None = None) -> None:
    conn.execute(_EVENT, {"run_id": run_id, "attempt": attempt, "state": state,
                          "detail": detail[:2000], "at_ms": now})


def run_values(task_row: Any, trigger: str, now: int, *, slot_ms: int | None = None,
               parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row of a new queued run of the task's current version."""
    return {"task_id": task_row.id, "version": task_row.version, "runtime": task_row.runtime,
            "trigger": trigger, "slot_ms": slot_ms,
            "parameters": orjson.dumps(parameters or {}).decode(), "state": "queued",
            "desired": "run", "reason": "", "attempts": 0, "not_before_ms": now,
            "created_ms": now, "updated_ms": now}


def queue_run(conn: Connection, dialect: str, task_row: Any, trigger: str, now: int,
              *, slot_ms: int | None = None, parameters: dict[str, Any] | None = None,
              ) -> int | None:
    """Queue a run of the task's current version; its id, or None when a run of ``slot_ms``
    exists already (a second scheduler or a restart)."""
    values = run_values(task_row, trigger, now, slot_ms=slot_ms, parameters=parameters)
    if slot_ms is None:
        run_id = conn.execute(_NEW_RUN, values).scalar_one()
        add_event(conn, run_id, "queued", now, trigger)
        return int(run_id)
    ids = _insert_runs(conn, dialect, [values], now)
    return ids[0] if ids else None


def start_runs(conn: Connection, rows: list[dict[str, Any]], now: int, details: list[str]
               ) -> list[int]:
    """Queue runs made with :func:`run_values` (no slot) in one statement, each with the
    detail of its queued event; their ids, in order."""
    if not rows:
        return []
    ids = [int(run_id) for run_id in conn.execute(
        runs.insert().returning(runs.c.id, sort_by_parameter_order=True), rows).scalars()]
    conn.execute(_EVENT, [{"run_id": run_id, "attempt": None, "state": "queued",
                           "detail": detail, "at_ms": now}
                          for run_id, detail in zip(ids, details, strict=True)])
    return ids


def queue_runs(conn: Connection, dialect: str, rows: list[dict[str, Any]],
               now: int) -> int:
    """Queue many scheduled runs (each with its slot) in a few statements; a slot that has a
    run already is skipped. The number queued."""
    return len(_insert_runs(conn, dialect, rows, now)) if rows else 0


def _insert_runs(conn: Connection, dialect: str, rows: list[dict[str, Any]],
                 now: int) -> list[int]:
    inserted = conn.execute(
        insert_ignore(dialect, runs).returning(runs.c.id, runs.c.trigger), rows).all()
    if inserted:
        conn.execute(events.insert(), [
            {"run_id": run_id, "attempt": None, "state": "queued", "detail": f"{trigger} slot",
             "at_ms": now} for run_id, trigger in inserted])
    return [int(run_id) for run_id, _ in inserted]


def backoff_ms(spec: TaskSpec, attempt: int) -> int:
    """The wait before attempt ``attempt + 1``: doubled per attempt, capped, with jitter."""
    retries = spec.retries
    wait = min(retries.backoff * 2 ** max(attempt - 1, 0), retries.max_backoff)
    wait *= 1 + random.uniform(-retries.jitter, retries.jitter)
    return int(max(wait, 0) * 1000)


def claim(conn: Connection, dialect: str, worker: str, runtimes: list[str], now: int,
          limit: int = 1) -> list[Claimed]:
    """Claim up to ``limit`` of the oldest claimable runs for ``worker``, an attempt each
    (none when nothing waits)."""
    if not runtimes or limit < 1:
        return []
    # the state condition again: on SQLite (no row locks) another server may have taken one
    taken = conn.execute(_take(dialect, tuple(sorted(set(runtimes)))),
                         {"now": now, "most": limit}).all()
    if not taken:
        return []
    taken.sort(key=lambda run: (run.not_before_ms, run.id))
    task_rows = {row.id: row for row in conn.execute(
        _TASKS_OF, {"task_ids": list({run.task_id for run in taken})})}
    tokens = [secrets.token_urlsafe(24) for _ in taken]
    attempt_ids = conn.execute(_NEW_ATTEMPTS, [
        {"run_id": run.id, "number": run.attempts, "worker": worker[:200], "token": token,
         "state": "running", "started_ms": now, "heartbeat_ms": now}
        for run, token in zip(taken, tokens, strict=True)]).scalars().all()
    conn.execute(_EVENT, [
        {"run_id": run.id, "attempt": run.attempts, "state": "running",
         "detail": f"worker {worker}", "at_ms": now} for run in taken])
    return [Claimed(run, task_rows[run.task_id], attempt_id, run.attempts, token)
            for run, attempt_id, token in zip(taken, attempt_ids, tokens, strict=True)]


def live_attempt(conn: Connection, attempt_id: int, token: str) -> Any:
    """The attempt when it is still the worker's to run (its token, not ended); Gone
    otherwise (Closed, HTTP 410), telling the worker to stop its process."""
    row = conn.execute(_ATTEMPT, {"attempt_id": attempt_id}).first()
    if row is None or not secrets.compare_digest(row.token, token or ""):
        raise Closed(f"attempt {attempt_id} is not yours (unknown, or its token does not match)")
    if row.state not in LIVE:
        raise Closed(f"attempt {attempt_id} is {row.state}: stop its process")
    return row


def heartbeat(conn: Connection, attempt_id: int, token: str, state: str,
              pid: int | None, now: int) -> str:
    """Record that the attempt's process is alive in ``state``; the run's desired state
    (``run``, ``pause`` or ``stop``) for the worker to apply."""
    attempt = live_attempt(conn, attempt_id, token)
    changed = conn.execute(_BEAT, {"attempt_id": attempt_id, "now": now, "new_state": state,
                                   "new_pid": pid})
    if changed.rowcount != 1:  # it ended meanwhile (finished, or called lost)
        raise Closed(f"attempt {attempt_id} has ended: stop its process")
    run = conn.execute(_RUN, {"run_id": attempt.run_id}).one()
    if state != attempt.state and run.state in LIVE and run.attempts == attempt.number:
        conn.execute(runs.update().where(runs.c.id == run.id,
                                         runs.c.state.in_(LIVE)).values(
            state=state, updated_ms=now))
        add_event(conn, run.id, state, now, "", attempt.number)
    return str(run.desired)


def finish(conn: Connection, attempt_id: int, token: str, outcome: str,
           exit_code: int | None, reason: str, now: int) -> Any:
    """End the attempt with ``outcome`` once (a repeat with the same token is a no-op) and
    move its run on: done, or queued again for a retry. The run row after it."""
    row = conn.execute(_ATTEMPT, {"attempt_id": attempt_id}).first()
    if row is None or not secrets.compare_digest(row.token, token or ""):
        raise Closed(f"attempt {attempt_id} is not yours (unknown, or its token does not match)")
    ended = conn.execute(_END_ATTEMPT, {"attempt_id": attempt_id, "outcome": outcome,
                                        "code": exit_code, "why": reason[:2000], "now": now})
    if ended.rowcount != 1:  # ended already: by this report before, or called lost
        state = conn.execute(sa.select(attempts.c.state).where(
            attempts.c.id == attempt_id)).scalar_one()
        if state != outcome:
            raise Conflict(f"attempt {attempt_id} ended as {state} already")
        return conn.execute(_RUN, {"run_id": row.run_id}).one()
    return _after_attempt(conn, row.run_id, row.number, outcome, reason, now)


def _after_attempt(conn: Connection, run_id: int, number: int, outcome: str,
                   reason: str, now: int) -> Any:
    """Move the run on after its attempt ``number`` ended; a run that is no longer on that
    attempt (ended, or on a later one) is left alone."""
    run = conn.execute(_RUN, {"run_id": run_id}).one()
    if run.state not in LIVE or run.attempts != number:
        return run
    state = outcome
    on_attempt = {"run_id": run_id, "number": number, "why": reason[:2000], "now": now}
    if run.desired == "stop":
        state = "cancelled" if outcome != "succeeded" else outcome
    elif outcome in ("failed", "lost") and number <= (spec := spec_of(
            conn.execute(_TASK, {"task_id": run.task_id}).one())).retries.count:
        wait = backoff_ms(spec, number)
        conn.execute(_RETRY, {**on_attempt, "not_before": now + wait})
        add_event(conn, run_id, outcome, now, reason, number)
        add_event(conn, run_id, "queued", now,
                  f"retry {number} of {spec.retries.count} in {wait / 1000:.1f} s")
        return conn.execute(_RUN, {"run_id": run_id}).one()
    ended = conn.execute(_END_RUN, {**on_attempt, "new_state": state, "ended": now}).one()
    add_event(conn, run_id, state, now, reason, number)
    _ended(conn, ended, now)
    return ended


def mark_lost(conn: Connection, older_than_ms: int, now: int) -> list[int]:
    """Attempts whose worker stopped heartbeating before ``older_than_ms``: ``lost``, their
    runs retried or ended. The attempt ids."""
    found = conn.execute(sa.select(attempts.c.id, attempts.c.run_id, attempts.c.number,
                                          attempts.c.worker).where(
        attempts.c.state.in_(LIVE), attempts.c.heartbeat_ms < older_than_ms)).all()
    lost = []
    for row in found:
        reason = f"worker {row.worker} stopped heartbeating"
        done = conn.execute(attempts.update().where(
            attempts.c.id == row.id, attempts.c.state.in_(LIVE)).values(
            state="lost", reason=reason, ended_ms=now))
        if done.rowcount == 1:
            _after_attempt(conn, row.run_id, row.number, "lost", reason, now)
            lost.append(row.id)
    return lost


def control(conn: Connection, run: Any, action: str, now: int) -> Any:
    """Pause, resume or stop a run; the run row after it. A run that is not on a worker
    changes at once; one that is gets the command with the worker's next heartbeat."""
    if run.state in ENDED:
        raise Conflict(f"run {run.id} has ended ({run.state})")
    on_worker = run.state in LIVE
    values: dict[str, Any] = {"updated_ms": now}
    if action == "stop":
        values["desired"] = "stop"
        if not on_worker or not _has_live_attempt(conn, run.id):
            values.update(state="cancelled", ended_ms=now, reason="stopped")
            add_event(conn, run.id, "cancelled", now, "stopped before it ran")
    elif action == "pause":
        values["desired"] = "pause"
        if run.state == "queued":
            values["state"] = "paused"
            add_event(conn, run.id, "paused", now, "held in the queue")
    else:  # resume
        values["desired"] = "run"
        if run.state == "paused" and not _has_live_attempt(conn, run.id):
            values["state"] = "queued"
            add_event(conn, run.id, "queued", now, "resumed")
    conn.execute(runs.update().where(runs.c.id == run.id).values(**values))
    after = conn.execute(_RUN, {"run_id": run.id}).one()
    if after.state in ENDED:
        _ended(conn, after, now)
    return after


def _has_live_attempt(conn: Connection, run_id: int) -> bool:
    return conn.execute(sa.select(attempts.c.id).where(
        attempts.c.run_id == run_id, attempts.c.state.in_(LIVE))).first() is not None


__all__ = ["LIVE", "Claimed", "RunEnded", "add_event", "backoff_ms", "claim", "control",
           "finish", "heartbeat", "live_attempt", "mark_lost", "on_run_end", "queue_run",
           "queue_runs", "queued_by_hooks", "run_of", "run_values", "spec_of", "start_runs"]
