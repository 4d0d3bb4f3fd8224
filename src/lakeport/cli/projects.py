"""``lakeport projects create|ls|rm``: the projects that group tasks on a lakeport server; and
how ``lakeport tasks`` prints task and run records."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lakeport.cli.common import short_time, stderr
from lakeport.cli.remote import (
    ApiKeyOption,
    JsonOption,
    ServerOption,
    call,
    show_record,
    show_records,
)

RUN_FIELDS = ("id", "project", "task", "version", "trigger", "slot", "state", "desired",
              "reason", "waiting", "attempts", "parameters", "created", "ended", "files")

app = typer.Typer(
    help="Projects group tasks (see: lakeport tasks --help). A project's tasks, runs and "
    "files belong to its owner and the users it is granted to.\n\n"
    "Example: lakeport projects create plant --description 'nightly reports' && "
    "lakeport projects ls",
    no_args_is_help=True,
)
ProjectArg = Annotated[str, typer.Argument(
    help="Project name (1-128 of A-Z a-z 0-9 _ . -).", show_default=False)]


@app.command("create")
def create(name: ProjectArg,
           description: Annotated[str, typer.Option(
               "--description", help="What the project is for.")] = "",
           as_json: JsonOption = False, url: ServerOption = None,
           api_key: ApiKeyOption = None) -> None:
    """Create a project.

    Example: lakeport projects create plant --description 'nightly reports'
    """
    record = call(url, api_key, lambda c: c.tasks.create_project(name, description))
    if as_json:
        show_record(record, True)
    else:
        stderr.print(f"created project {record['name']}", markup=False)


@app.command("ls")
def ls(as_json: JsonOption = False, url: ServerOption = None,
       api_key: ApiKeyOption = None) -> None:
    """List the projects you own or were granted, with their task counts.

    Example: lakeport projects ls --json
    """
    from lakeport.client.tasks import PROJECT_COLUMNS

    rows = call(url, api_key, lambda c: c.tasks.projects())
    if not as_json:
        rows = [{**row, "created": short_time(row.get("created"))} for row in rows]
    show_records(rows, as_json, None if as_json else PROJECT_COLUMNS,
                 "no projects: make one with lakeport projects create NAME")


@app.command("rm")
def rm(name: ProjectArg, url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Delete a project with its tasks and runs (running ones are stopped). The files its
    runs left stay in the lake under tasks/PROJECT/.

    Example: lakeport projects rm plant
    """
    call(url, api_key, lambda c: c.tasks.delete_project(name))
    stderr.print(f"deleted project {name}", markup=False)


def _schedule_text(schedule: dict[str, Any]) -> str:
    kind = schedule.get("kind")
    if kind == "at":
        return f"at {schedule['at']}"
    if kind == "cron":
        limit = schedule.get("limit") or 0
        return (f"cron '{schedule['expression']}' {schedule['timezone']}"
                f"{f', {limit} runs' if limit else ''}, catchup {schedule['catchup']}")
    return "manual (tasks start)"


def show_task(record: dict[str, Any], as_json: bool) -> None:
    """A task as field/value lines (or its JSON record)."""
    if as_json:
        show_record(record, True)
        return
    spec = record.get("spec") or {}
    retries = spec.get("retries") or {}
    shown = {"task": f"{record['project']}/{record['name']}", "version": record["version"],
             "runtime": record["runtime"], "state": record["state"],
             "entry": spec.get("entry") or record.get("executable"),
             "args": spec.get("args") or None, "env": spec.get("env") or None,
             "settings": spec.get("settings") or None, "timeout": spec.get("timeout"),
             "retries": f"{retries.get('count', 0)} (backoff {retries.get('backoff', 0):g}s)",
             "memory_mb": spec.get("memory_mb"), "cpu_seconds": spec.get("cpu_seconds"),
             "schedule": _schedule_text(spec.get("schedule") or {}),
             "next_run": record.get("next_run"), "scheduled_runs": record.get("scheduled_runs"),
             "links": [f"{link['project']}/{link['task']}:{link['file']}"
                       for link in record.get("links") or []] or None,
             "updated": record.get("updated")}
    show_record({key: value for key, value in shown.items() if value is not None}, False)


def show_run(record: dict[str, Any], as_json: bool) -> None:
    """A run as field/value lines (or its JSON record)."""
    if as_json:
        show_record(record, True)
        return
    shown = {key: record[key] for key in RUN_FIELDS if record.get(key) not in (None, "", {})}
    show_record(shown, False)


__all__ = ["ProjectArg", "app", "show_run", "show_task"]
