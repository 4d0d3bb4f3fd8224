"""Workflow triggers, fired by the leading server's scheduler each tick: cron slots (the task
service's rules: one instance per slot, ``catchup``, ``limit``, DST-safe), files landing in
the data lake under a path pattern (one instance per file), and messages of a topic that
match a filter (one instance per message: :mod:`.topic_triggers`).

Each trigger's progress is a row of ``workflow_triggers`` (the cron window handled so far; the
last lake entry or seqno looked at), moved on in the transaction that makes its instances,
and each instance carries a unique ``trigger_key`` (the slot; the file's entry; the seqno): a
restart, or a second server, starting the same instance again does nothing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from lakeport.errors import LakeportError
from lakeport.server.files.access import grant_roots, readable
from lakeport.server.files.tables import entries
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.tasks.scheduler import columns_for, cron_step
from lakeport.server.workflows import instances as instance_rows
from lakeport.server.workflows import topic_triggers
from lakeport.server.workflows.access import owner_of, runnable_tasks
from lakeport.server.workflows.tables import instances, triggers, versions, workflows
from lakeport.streams.base import Engine
from lakeport.workflows.definition import (
    GIVEN,
    CronTrigger,
    FilesTrigger,
    TopicTrigger,
    WorkflowSpec,
)

log = logging.getLogger("lakeport.server.workflows")
BATCH = 500
"""Lake entries looked at per files trigger and tick."""
LOOKBACK_MS = 30_000
"""How long a files trigger looks again at the entries made before its cursor."""


def reset_triggers(conn: Connection, workflow_id: int, spec: WorkflowSpec, now: int,
                   topic_ends: Mapping[int, int]) -> None:
    """The triggers of a workflow's new version, from ``now``: cron from its next slot,
    files from the lake's newest entry (files that landed before do not fire), topics from
    their last seqno (``topic_ends`` by trigger number)."""
    conn.execute(triggers.delete().where(triggers.c.workflow_id == workflow_id))
    newest = conn.execute(sa.select(sa.func.max(entries.c.id))).scalar() or 0
    rows = []
    for number, trigger in enumerate(spec.triggers, 1):
        row: dict[str, Any] = {"workflow_id": workflow_id, "number": number,
                               "version": spec.version, "kind": trigger.kind,
                               "state": "active", "next_fire_ms": None,
                               "fired_until_ms": None, "fired": 0, "cursor": ""}
        if isinstance(trigger, CronTrigger):
            columns = columns_for(trigger.schedule(), now)
            row.update(next_fire_ms=columns["next_fire_ms"], fired_until_ms=now,
                       state=columns["state"])
        elif isinstance(trigger, FilesTrigger):
            row["cursor"] = str(newest)
        else:
            row["cursor"] = str(topic_ends[number])
        rows.append(row)
    if rows:
        conn.execute(triggers.insert(), rows)


def glob_pattern(pattern: str) -> re.Pattern[str]:
    """A lake path glob as a regular expression: ``*`` and ``?`` within one path segment,
    ``**`` across segments."""
    out = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out))


def _start(conn: Connection, workflow: Any, plan: instance_rows.Plan, kind: str,
           given: dict[str, str], key: str, now: int) -> int | None:
    """An instance for a trigger's event (``given`` the trigger's parameters); None when
    the event started one already."""
    trigger_given = {name: value for name, value in given.items()
                     if name in plan.spec.parameters}
    owner = owner_of(conn, workflow.owner_id)
    task_rows = runnable_tasks(conn, owner, plan.spec)
    parameters = instance_rows.check_parameters(plan.spec, trigger_given)
    return instance_rows.create(conn, workflow, plan, task_rows, parameters, now,
                                user_id=None, trigger=kind, trigger_key=key)


def _fire_cron(conn: Connection, row: Any, workflow: Any, plan: instance_rows.Plan,
               trigger: CronTrigger, now: int) -> int:
    """An instance per due slot (the task scheduler's rules); how many started."""
    slots, moved = cron_step(trigger.schedule(), row.fired_until_ms, row.fired, now)
    made = 0
    for slot in slots:
        when = datetime.fromtimestamp(slot / 1000, UTC).isoformat()
        given = {**trigger.parameters, GIVEN["cron"][0]: when}
        if _start(conn, workflow, plan, "cron", given, f"cron {row.number} {slot}",
                  now) is not None:
            made += 1
    conn.execute(triggers.update().where(
        triggers.c.workflow_id == row.workflow_id, triggers.c.number == row.number,
        triggers.c.version == row.version).values(**moved))
    return made


def fire_cron(conn: Connection, workflow_id: int, number: int, now: int) -> int:
    """Start the instances of a cron trigger's slots due at ``now``; how many."""
    row = conn.execute(sa.select(triggers).where(
        triggers.c.workflow_id == workflow_id, triggers.c.number == number,
        triggers.c.state == "active", triggers.c.next_fire_ms <= now)).first()
    if row is None:  # fired meanwhile, or a new version
        return 0
    workflow, plan = _workflow(conn, row.workflow_id, row.version)
    trigger = plan.spec.triggers[row.number - 1]
    assert isinstance(trigger, CronTrigger)
    return _fire_cron(conn, row, workflow, plan, trigger, now)


def _workflow(conn: Connection, workflow_id: int, version: int
              ) -> tuple[Any, instance_rows.Plan]:
    workflow = conn.execute(sa.select(workflows).where(workflows.c.id == workflow_id)).one()
    return workflow, instance_rows.version_plan(conn, workflow_id, version)


def fire_found(conn: Connection, row: Any, events: list[tuple[dict[str, str], str]],
               scanned_to: int, now: int) -> int:
    """Start an instance per event of ``events`` (the parameters it gives, its unique key)
    and move the trigger's cursor to ``scanned_to``; how many started."""
    current = conn.execute(sa.select(triggers.c.cursor).where(
        triggers.c.workflow_id == row.workflow_id, triggers.c.number == row.number,
        triggers.c.version == row.version)).scalar()
    if current != row.cursor:  # moved on meanwhile (another server), or a new version
        return 0
    workflow, plan = _workflow(conn, row.workflow_id, row.version)
    made = sum(_start(conn, workflow, plan, row.kind, given, key, now) is not None
               for given, key in events)
    conn.execute(triggers.update().where(
        triggers.c.workflow_id == row.workflow_id, triggers.c.number == row.number,
        triggers.c.version == row.version).values(cursor=str(scanned_to),
                                                  fired=triggers.c.fired + made))
    return made


async def scan_files(store: Store, row: Any) -> tuple[list[tuple[dict[str, str], str]], int]:
    """The files that landed after the trigger's cursor, that match its pattern and that the
    workflow's owner may read, as events (parameters, key); (those, the last entry id looked
    at). Entries made in the last :data:`LOOKBACK_MS` are looked at again, those that
    started no instance yet kept: on PostgreSQL an upload can commit after one with a
    larger id was seen."""
    async with store.connect() as conn:
        workflow, plan = await conn.run_sync(_workflow, row.workflow_id, row.version)
        trigger = plan.spec.triggers[row.number - 1]
        assert isinstance(trigger, FilesTrigger)
        owner = await conn.run_sync(owner_of, workflow.owner_id)
        roots = await grant_roots(conn, owner)
        after = int(row.cursor or 0)
        applied = (await conn.execute(sa.select(versions.c.created_ms).where(
            versions.c.workflow_id == row.workflow_id, versions.c.version == row.version))
        ).scalar_one()
        since = max(now_ms() - LOOKBACK_MS, applied)  # files from before it never fire
        scanned = (await conn.execute(
            sa.select(entries.c.id, entries.c.path, entries.c.created_ms, entries.c.kind,
                      readable(owner, roots).label("allowed"))
            .where(entries.c.kind == "file", sa.or_(
                entries.c.id > after, entries.c.created_ms > since))
            .order_by(entries.c.id).limit(BATCH))).all()
        pattern = glob_pattern(trigger.path.strip("/"))
        found = {f"file {entry.id} {entry.created_ms}": entry.path for entry in scanned
                 if entry.allowed and pattern.fullmatch(entry.path)}
        if found:
            started = set((await conn.execute(sa.select(instances.c.trigger_key).where(
                instances.c.workflow_id == row.workflow_id,
                instances.c.trigger_key.in_(list(found))))).scalars())
            found = {key: path for key, path in found.items() if key not in started}
    scanned_to = max([after, *(entry.id for entry in scanned)])
    return [({**trigger.parameters, GIVEN["files"][0]: path}, key)
            for key, path in found.items()], scanned_to


async def scan_topic(store: Store, engine: Engine, row: Any
                     ) -> tuple[list[tuple[dict[str, str], str]], int]:
    """The matching messages after a topic trigger's cursor as events (parameters, key);
    (those, the last seqno looked at)."""
    async with store.connect() as conn:
        workflow, plan = await conn.run_sync(_workflow, row.workflow_id, row.version)
        owner = await conn.run_sync(owner_of, workflow.owner_id)
    trigger = plan.spec.triggers[row.number - 1]
    assert isinstance(trigger, TopicTrigger)
    found, scanned_to = await topic_triggers.scan_topic(store, engine, row, trigger, owner)
    return [(topic_triggers.given_by(trigger, seqno, payload), f"topic {row.number} {seqno}")
            for seqno, payload in found], scanned_to


async def fire(store: Store, engine: Engine, notify: Any, swept: list[float]) -> None:
    """One tick of the triggers: cron slots due, new files, new messages; wakes workers for
    the runs queued. A trigger that fails (its tasks gone, its owner's access revoked) is
    logged and tried again next tick."""
    async with store.connect() as conn:
        rows = (await conn.execute(sa.select(triggers).where(
            triggers.c.state == "active", sa.or_(
                triggers.c.kind != "cron",
                (triggers.c.kind == "cron") & (triggers.c.next_fire_ms <= now_ms()))))).all()
    made = 0
    for row in rows:
        try:
            if row.kind == "cron":
                made += await store.transact(lambda conn, row=row: fire_cron(
                    conn, row.workflow_id, row.number, now_ms()))
                continue
            found, scanned_to = await (scan_files(store, row) if row.kind == "files"
                                       else scan_topic(store, engine, row))
            if found or scanned_to != int(row.cursor or 0):
                made += await store.transact(
                    lambda conn, row=row, found=found, to=scanned_to: fire_found(
                        conn, row, found, to, now_ms()))
        except LakeportError as exc:
            log.warning("workflow trigger %s/%s: %s", row.workflow_id, row.number, exc)
    made += await sweep(store, swept)
    if made:
        notify(made)


SWEEP_EVERY = 2.0
"""Seconds between two sweeps of instances waiting on a concurrency limit."""


async def sweep(store: Store, swept: list[float]) -> int:
    """Every :data:`SWEEP_EVERY` seconds (``swept[0]``: the last sweep's monotonic time),
    move on the running instances that wait on a task's concurrency limit; the runs
    queued."""
    if time.monotonic() - swept[0] < SWEEP_EVERY:
        return 0
    swept[0] = time.monotonic()
    waiting = await store.transact(instance_rows.limited_running)
    queued = 0
    for instance_id in waiting:
        queued += await store.transact(lambda conn, i=instance_id: instance_rows.advance(
            conn, i, now_ms(), skip_locked=True))
    return queued


__all__ = ["fire", "fire_cron", "fire_found", "glob_pattern", "reset_triggers", "scan_files",
           "scan_topic", "sweep"]
