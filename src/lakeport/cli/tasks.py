"""``lakeport tasks ...``: deploy code to a lakeport server's task service and run it now, at a
time or on a cron schedule; control, inspect and follow its runs."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakeport.cli.common import duration, parse_option, parse_pairs, short_time, stderr, write_out
from lakeport.cli.projects import ProjectArg, show_run, show_task
from lakeport.cli.remote import (
    ApiKeyOption,
    JsonOption,
    LimitOption,
    ServerOption,
    call,
    print_table,
    show_record,
    show_records,
)
from lakeport.errors import Invalid
from lakeport.units import parse_size

if TYPE_CHECKING:
    from lakeport.client import Client

app = typer.Typer(
    help="Tasks: code deployed to the server and run by workers now (start), at a time "
    "(--at) or on a cron schedule (--cron), with retries, timeouts, limits and logs per "
    "attempt. Runtimes: py, js, java, c, cpp, sh, spark, component (a data component: "
    "docs/components.md). A run sees its input zip and linked files in $LAKEPORT_TASK_IN "
    "and writes files to $LAKEPORT_TASK_OUT; they land in the lake under "
    "tasks/PROJECT/TASK/RUN/ (lakeport files ls).\n\n"
    "Example: lakeport projects create plant && lakeport tasks deploy plant report "
    "--runtime py --executable main.py && lakeport tasks start plant report --follow",
    no_args_is_help=True,
)
TaskArg = Annotated[str, typer.Argument(help="Task name (1-128 of A-Z a-z 0-9 _ . -).",
                                        show_default=False)]
RunArg = Annotated[int, typer.Argument(help="Run id (from tasks start or tasks runs).",
                                       show_default=False)]
AtOption = Annotated[str | None, typer.Option(
    "--at", help="Run once at this time: ISO 8601 (2026-12-24T18:30:00+01:00) or "
    "'24-12-2026 23:00:00.000 IST'.", show_default=False)]
CronOption = Annotated[str | None, typer.Option(
    "--cron", help="Run on a cron schedule: 'minute hour day month weekday'.",
    show_default=False)]
ZoneOption = Annotated[str | None, typer.Option(
    "--timezone", help="IANA time zone the cron pattern is read in (default UTC).",
    show_default=False)]
CronLimitOption = Annotated[int | None, typer.Option(
    "--limit", help="Stop the cron schedule after this many runs (0 = forever).",
    show_default=False)]
CatchupOption = Annotated[str | None, typer.Option(
    "--catchup", help="Cron slots missed while no scheduler ran: none, latest or all "
    "(default none).", show_default=False)]



def schedule_of(at: str | None, cron: str | None, timezone: str | None, limit: int | None,
                catchup: str | None) -> dict[str, Any] | None:
    """The schedule the options ask for (None: none asked for)."""
    if at is not None and cron is not None:
        raise Invalid("--at and --cron: give one of them")
    if cron is None and (timezone is not None or limit is not None or catchup is not None):
        raise Invalid("--timezone, --limit and --catchup go with --cron")
    if at is not None:
        return {"kind": "at", "at": at}
    if cron is not None:
        return {"kind": "cron", "expression": cron, "timezone": timezone or "UTC",
                "limit": 0 if limit is None else limit, "catchup": catchup or "none"}
    return None


def _memory_mb(text: str | None) -> int | None:
    if text is None:
        return None
    if text.strip().isdigit():
        return int(text)
    size = parse_option(parse_size, text, "--memory")
    assert size is not None
    if size < 1 << 20:
        raise Invalid(f"--memory {text}: at least 1MB")
    return size >> 20


@app.command()
def deploy(
    project: ProjectArg, task: TaskArg,
    runtime: Annotated[str, typer.Option("--runtime", help="py, js, java, c, cpp, sh, "
                                         "spark or component.", show_default=False)],
    executable: Annotated[Path | None, typer.Option(
        "--executable", help="The program file (the entry point unless --entry).",
        show_default=False)] = None,
    dependencies: Annotated[Path | None, typer.Option(
        "--dependencies", help="A zip unpacked beside the executable (modules, "
        "requirements.txt for py).", show_default=False)] = None,
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", help="A zip unpacked into the run's in/ folder.", show_default=False)]
    = None,
    entry: Annotated[str | None, typer.Option(
        "--entry", help="Entry point inside the bundle (default: the executable).",
        show_default=False)] = None,
    arg: Annotated[list[str] | None, typer.Option(
        "--arg", help="An argument after the entry point (repeatable).",
        show_default=False)] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", help="Environment K=V (repeatable; V may be <% secrets.NAME %>).",
        show_default=False)] = None,
    setting: Annotated[list[str] | None, typer.Option(
        "--setting", help="Runtime setting K=V, e.g. master=local[2] for spark "
        "(repeatable).", show_default=False)] = None,
    timeout: Annotated[str | None, typer.Option(
        "--timeout", help="Stop an attempt after this long (30s, 10m, 2h).",
        show_default=False)] = None,
    retries: Annotated[int | None, typer.Option(
        "--retries", help="Try a failed or lost run again this many times.",
        show_default=False)] = None,
    backoff: Annotated[str | None, typer.Option(
        "--backoff", help="Wait before the first retry, doubled per retry (default 1s).",
        show_default=False)] = None,
    memory: Annotated[str | None, typer.Option(
        "--memory", help="Memory limit (512MB, 2GiB; a bare number is MB).",
        show_default=False)] = None,
    cpu_time: Annotated[str | None, typer.Option(
        "--cpu-time", help="CPU time limit (60s, 10m).", show_default=False)] = None,
    at: AtOption = None, cron: CronOption = None, timezone: ZoneOption = None,
    limit: CronLimitOption = None, catchup: CatchupOption = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing task's code and settings (a new version; "
        "runs keep the version they ran).")] = False,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Deploy a task: its code (executable, dependencies zip, input zip) and settings.

    Without --at or --cron it runs when started (lakeport tasks start); --overwrite
    deploys new code as a new version.

    Example: lakeport tasks deploy plant report --runtime py --executable main.py

    Example: lakeport tasks deploy plant nightly --runtime sh --executable job.sh
    --dependencies deps.zip --inputs in.zip --retries 2 --backoff 5s --timeout 10m
    --memory 512MB --cron '0 6 * * *' --timezone Europe/Berlin --limit 3
    """
    retry: dict[str, Any] | None = None
    if retries is not None or backoff is not None:
        retry = {"count": retries or 0}
        if backoff is not None:
            retry["backoff"] = duration(backoff, "--backoff")
    cpu = duration(cpu_time, "--cpu-time")
    options = {
        "runtime": runtime, "executable": executable, "dependencies": dependencies,
        "inputs": inputs, "entry": entry, "args": arg or (),
        "env": parse_pairs(env, "--env") or None,
        "settings": parse_pairs(setting, "--setting") or None,
        "timeout": duration(timeout, "--timeout"), "retries": retry,
        "memory_mb": _memory_mb(memory), "cpu_seconds": None if cpu is None else
        max(1, math.ceil(cpu)), "schedule": schedule_of(at, cron, timezone, limit, catchup),
        "overwrite": overwrite}
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=stderr, transient=True,
                  disable=not stderr.is_terminal) as progress:
        bar = progress.add_task(f"uploading {project}/{task}", total=None)

        def on_progress(sent: int, total: int) -> None:
            done = f"{project}/{task}: the server checks and stores the bundle"
            progress.update(bar, completed=sent, total=total,
                            description=done if sent >= total else None)

        record = call(url, api_key, lambda c: c.tasks.deploy(
            project, task, on_progress=on_progress, **options))
    if not as_json:
        stderr.print(f"deployed {project}/{task} version {record['version']}", markup=False)
    show_task(record, as_json)


async def _follow(client: Client, run_id: int) -> dict[str, Any]:
    """Print the run's stdout, attempt after attempt, until it ends; its final record."""
    from lakeport.client.tasks import ENDED

    number = 1
    while True:
        record = await client.tasks.run(run_id)
        if record["attempts"] >= number:
            if number > 1:
                stderr.print(f"-- attempt {number}", markup=False)
            async for chunk in client.tasks.logs(run_id, attempt=number, follow=True):
                write_out(chunk)
            number += 1
        elif record["state"] in ENDED:
            return record
        else:
            await asyncio.sleep(0.2)


@app.command()
def start(
    project: ProjectArg, task: TaskArg,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Parameter K=V, seen by the run as $LAKEPORT_PARAM_K (repeatable).",
        show_default=False)] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait for the run to end; exit 1 unless it succeeded.")] = False,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Print the run's stdout while it runs (implies --wait).")]
    = False,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Start a run of a task now.

    Example: lakeport tasks start plant report --param day=2026-01-01 --follow
    """
    parameters = parse_pairs(param, "--param")

    async def go(client: Client) -> tuple[dict[str, Any], dict[str, Any] | None]:
        run = await client.tasks.start(project, task, parameters)
        if not (wait or follow):
            return run, None
        if not as_json:
            stderr.print(f"run {run['id']} {run['state']}"
                         + (f": {run['waiting']}" if run.get("waiting") else ""),
                         markup=False, soft_wrap=True)
        if follow:
            return run, await _follow(client, run["id"])
        return run, await client.tasks.wait(run["id"])

    run, final = call(url, api_key, go)
    if final is None:
        show_run(run, as_json)
        return
    _report_end(final, as_json)


def _report_end(final: dict[str, Any], as_json: bool) -> None:
    if as_json:
        show_record(final, True)
    else:
        reason = f": {final['reason']}" if final.get("reason") else ""
        stderr.print(f"run {final['id']} {final['state']}{reason}", markup=False,
                     soft_wrap=True)
    if final["state"] != "succeeded":
        raise typer.Exit(1)


def _control(action: str, doc: str) -> None:
    def command(run_id: RunArg, as_json: JsonOption = False, url: ServerOption = None,
                api_key: ApiKeyOption = None) -> None:
        show_run(call(url, api_key, lambda c: getattr(c.tasks, action)(run_id)), as_json)

    command.__doc__ = f"{doc}\n\nExample: lakeport tasks {action} 42"
    app.command(action)(command)


_control("pause", "Hold a run: its process is stopped with SIGSTOP (a queued run waits).")
_control("resume", "Continue a paused run (SIGCONT).")
_control("stop", "Stop a run: SIGTERM to it and its children, SIGKILL after a grace period.")


@app.command()
def reschedule(
    project: ProjectArg, task: TaskArg, at: AtOption = None, cron: CronOption = None,
    timezone: ZoneOption = None, limit: CronLimitOption = None,
    catchup: CatchupOption = None,
    manual: Annotated[bool, typer.Option(
        "--manual", help="No schedule: run only when started.")] = False,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Give a task a new time or cron pattern (its run count starts again).

    Example: lakeport tasks reschedule plant report --cron '*/15 * * * *' --limit 4
    """
    schedule = schedule_of(at, cron, timezone, limit, catchup)
    if (schedule is None) == (not manual):
        raise Invalid("give one of --at, --cron or --manual")
    record = call(url, api_key, lambda c: c.tasks.reschedule(
        project, task, schedule or {"kind": "now"}))
    show_task(record, as_json)


@app.command()
def copy(project: ProjectArg, task: TaskArg,
         new: Annotated[str, typer.Argument(help="Name of the copy.", show_default=False)],
         to_project: Annotated[str | None, typer.Option(
             "--to-project", help="Put the copy in this project (default: the same).",
             show_default=False)] = None,
         as_json: JsonOption = False, url: ServerOption = None,
         api_key: ApiKeyOption = None) -> None:
    """Copy a task (code, settings, links) under a new name.

    Example: lakeport tasks copy plant report report-eu --to-project plant-eu
    """
    record = call(url, api_key, lambda c: c.tasks.copy(project, task, new, to_project))
    show_task(record, as_json)


def _link(text: str) -> tuple[str, str, str]:
    source, _, file = text.partition(":")
    project, _, task = source.partition("/")
    if not (project and task and file):
        raise Invalid(f"--from {text}: expected PROJECT/TASK:FILE (e.g. plant/clean:out.csv)")
    return project, task, file


@app.command()
def link(project: ProjectArg, task: TaskArg,
         source: Annotated[list[str] | None, typer.Option(
             "--from", help="PROJECT/TASK:FILE, a file of that task's latest successful "
             "run's out/ (repeatable).", show_default=False)] = None,
         clear: Annotated[bool, typer.Option("--clear", help="Remove every link.")] = False,
         as_json: JsonOption = False, url: ServerOption = None,
         api_key: ApiKeyOption = None) -> None:
    """Set the files put into the task's in/ from other tasks' outputs (replaces its links).

    Example: lakeport tasks link plant report --from plant/clean:rows.csv
    """
    if bool(source) == clear:
        raise Invalid("give --from PROJECT/TASK:FILE (repeatable) or --clear")
    links = [_link(text) for text in source or ()]
    rows = call(url, api_key, lambda c: c.tasks.link_files(project, task, links))
    show_records(rows, as_json, None, f"{project}/{task} has no links")


@app.command("ls")
def ls(project: ProjectArg, as_json: JsonOption = False, url: ServerOption = None,
       api_key: ApiKeyOption = None) -> None:
    """List the tasks of a project.

    Example: lakeport tasks ls plant
    """
    from lakeport.client.tasks import TASK_COLUMNS

    rows = call(url, api_key, lambda c: c.tasks.tasks(project))
    if not as_json:
        rows = [{**row, "next_run": short_time(row.get("next_run")),
                 "updated": short_time(row.get("updated"))} for row in rows]
    show_records(rows, as_json, None if as_json else TASK_COLUMNS,
                 f"no tasks in {project}: deploy one with lakeport tasks deploy")


@app.command()
def show(project: ProjectArg, task: TaskArg, as_json: JsonOption = False,
         url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Show a task: code version, settings, schedule, next run, links.

    Example: lakeport tasks show plant report
    """
    show_task(call(url, api_key, lambda c: c.tasks.task(project, task)), as_json)


@app.command()
def runs(project: ProjectArg, task: TaskArg,
         state: Annotated[list[str] | None, typer.Option(
             "--state", help="Only runs in this state: queued, running, paused, succeeded, "
             "failed, cancelled, lost (repeatable).", show_default=False)] = None,
         limit: LimitOption = None, as_json: JsonOption = False, url: ServerOption = None,
         api_key: ApiKeyOption = None) -> None:
    """List a task's runs, newest first (a queued run says why it waits).

    Example: lakeport tasks runs plant report --state failed --limit 10
    """
    from lakeport.client.tasks import RUN_COLUMNS

    rows = call(url, api_key, lambda c: c.tasks.runs(project, task, state=state, limit=limit))
    if not as_json:
        rows = [{**row, "reason": row.get("waiting") or row.get("reason"),
                 "created": short_time(row.get("created")),
                 "ended": short_time(row.get("ended"))} for row in rows]
    show_records(rows, as_json, None if as_json else RUN_COLUMNS,
                 f"no runs of {project}/{task}")


@app.command("run")
def run_(run_id: RunArg, as_json: JsonOption = False, url: ServerOption = None,
         api_key: ApiKeyOption = None) -> None:
    """Show one run with its attempts and state transitions.

    Example: lakeport tasks run 42
    """
    from lakeport.client.results import to_table

    record = call(url, api_key, lambda c: c.tasks.run(run_id))
    show_run(record, as_json)
    if as_json:
        return
    for title, rows in (("attempts", record.get("attempt_list") or []),
                        ("events", record.get("events") or [])):
        if rows:
            table = to_table(rows, title=title)
            table.box = None
            print_table(table)


@app.command()
def logs(run_id: RunArg,
         errors: Annotated[bool, typer.Option("--stderr", help="Its stderr, not stdout.")]
         = False,
         attempt: Annotated[int | None, typer.Option(
             "--attempt", help="This attempt (default: the latest).", show_default=False)]
         = None,
         follow: Annotated[bool, typer.Option(
             "--follow", "-f", help="Keep printing while the attempt runs.")] = False,
         url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Print a run's output (size-capped: the tail is kept when cut).

    Example: lakeport tasks logs 42 --stderr --follow
    """
    async def go(client: Client) -> None:
        async for chunk in client.tasks.logs(run_id, "stderr" if errors else "stdout",
                                             attempt=attempt, follow=follow):
            write_out(chunk)

    call(url, api_key, go)


@app.command()
def rm(project: ProjectArg, task: TaskArg, url: ServerOption = None,
       api_key: ApiKeyOption = None) -> None:
    """Delete a task and its runs (the files they left stay in the lake).

    Example: lakeport tasks rm plant report
    """
    call(url, api_key, lambda c: c.tasks.delete(project, task))
    stderr.print(f"deleted {project}/{task}", markup=False)


__all__ = ["app", "schedule_of"]
