"""Projects, tasks, runs and attempts as the API shows them."""

from __future__ import annotations

from typing import Any

import orjson

from lakeport.server.times import format_time
from lakeport.tasks.spec import TaskSpec


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_time(ms)


def project_record(row: Any, tasks: int | None = None) -> dict[str, Any]:
    record = {"name": row.name, "description": row.description, "owner": row.owner,
              "created": _time(row.created_ms)}
    if tasks is not None:
        record["tasks"] = tasks
    return record


def task_record(project: str, row: Any, links: list[dict[str, str]] | None = None,
                executable: str | None = None) -> dict[str, Any]:
    spec = TaskSpec.model_validate_json(row.spec)
    record = {"project": project, "name": row.name, "version": row.version,
              "runtime": row.runtime, "state": row.state,
              "spec": spec.model_dump(mode="json"),
              "next_run": _time(row.next_fire_ms), "scheduled_runs": row.fired,
              "created": _time(row.created_ms), "updated": _time(row.updated_ms)}
    if executable is not None:
        record["executable"] = executable
    if links is not None:
        record["links"] = links
    return record


def run_record(row: Any, project: str, task: str, waiting: str | None = None
               ) -> dict[str, Any]:
    record = {"id": row.id, "project": project, "task": task, "version": row.version,
              "runtime": row.runtime, "trigger": row.trigger, "slot": _time(row.slot_ms),
              "state": row.state, "desired": row.desired, "reason": row.reason,
              "attempts": row.attempts, "parameters": orjson.loads(row.parameters),
              "created": _time(row.created_ms), "updated": _time(row.updated_ms),
              "ended": _time(row.ended_ms),
              "not_before": _time(row.not_before_ms) if row.state == "queued" else None,
              "files": f"tasks/{project}/{task}/{row.id}"}
    if waiting:
        record["waiting"] = waiting
    return record


def attempt_record(row: Any) -> dict[str, Any]:
    return {"number": row.number, "worker": row.worker, "state": row.state, "pid": row.pid,
            "exit_code": row.exit_code, "reason": row.reason,
            "started": _time(row.started_ms), "heartbeat": _time(row.heartbeat_ms),
            "ended": _time(row.ended_ms)}


def event_record(row: Any) -> dict[str, Any]:
    return {"state": row.state, "attempt": row.attempt, "detail": row.detail,
            "at": _time(row.at_ms)}


__all__ = ["attempt_record", "event_record", "project_record", "run_record", "task_record"]
