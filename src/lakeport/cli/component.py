"""``lakeport component ...``: run data components written against the file contract
(``config.json``, ``in/``, ``out/``, ``state.json``, ``usage.json``) on lakeport's own tables
and files, list their jobs, scaffold one and run its test cases."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from lakeport.cli.common import duration, stderr

app = typer.Typer(
    help="Data components on the file contract: the runner writes config.json, in/tables "
    "(+ manifests), in/files and in/state.json into a data folder, runs the component with "
    "KBC_DATADIR and the other KBC_* variables, then loads out/tables and out/files by the "
    "output mapping, keeps out/state.json for the next run and records out/usage.json.\n\n"
    "Example: lakeport component create demo && lakeport component test demo",
    no_args_is_help=True,
)

DirArg = Annotated[Path, typer.Argument(help="The component's folder.", show_default=False)]


def _tables_root(root: str | None, home: Path | None = None) -> str:
    from lakeport.home import lakeport_home

    return root or os.environ.get("LAKEPORT_TABLES") or str((home or lakeport_home()) / "tables")


@app.command()
def run(
    component_dir: DirArg,
    config: Annotated[Path | None, typer.Option(
        "--config", help="The configuration (config.json; default DIR/config.json).",
        show_default=False)] = None,
    config_id: Annotated[str | None, typer.Option(
        "--config-id", help="Configuration id: state and jobs are kept per id (default: the "
        "component folder's name).", show_default=False)] = None,
    row: Annotated[str | None, typer.Option(
        "--row", help="Run this row of the configuration's rows.", show_default=False)] = None,
    command: Annotated[str | None, typer.Option(
        "--command", help="The component's command, run in DIR (default: 'python main.py' "
        "when DIR/main.py exists, else 'python src/component.py').",
        show_default=False)] = None,
    timeout: Annotated[str, typer.Option(
        "--timeout", help="Kill the component's processes after this long.")] = "1h",
    tables_root: Annotated[str | None, typer.Option(
        "--tables-root", envvar="LAKEPORT_TABLES", help="Storage tables: a folder or URL "
        "(default LAKEPORT_HOME/tables).", show_default=False)] = None,
    parent_run_id: Annotated[str | None, typer.Option(
        "--parent-run-id", help="Run id of the parent job (files of the chain are found "
        "with filter_by_run_id).", show_default=False)] = None,
    keep_data: Annotated[Path | None, typer.Option(
        "--data-dir", help="Make the data folder here and keep it (default: a temporary "
        "folder, removed after the run).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Do not echo the component's output.")] = False,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Keep states, jobs and component files under this lakeport home "
        "(default LAKEPORT_HOME).", show_default=False)] = None,
    summary: Annotated[Path | None, typer.Option(
        "--summary", help="Also write the job (state, duration, usage, tables and files in "
        "and out) to this JSON file.", show_default=False)] = None,
) -> None:
    """Run a component once: data folder, command, output mapping, state, usage, job."""
    from lakeport.components import (
        FileStore,
        JobStore,
        RunOptions,
        StateStore,
        load_config,
        run_component,
    )
    from lakeport.components.testing import resolve_command
    from lakeport.errors import LakeportError
    from lakeport.tables import TableStore

    folder = component_dir.resolve()
    if not folder.is_dir():
        raise typer.BadParameter(f"{component_dir} is not a folder", param_hint="DIR")
    cfg = load_config(config or folder / "config.json")

    def echo(stream: str, line: str) -> None:
        if not quiet:
            stderr.print(line, markup=False, highlight=False, soft_wrap=True)

    options = RunOptions(
        component_dir=folder, command=resolve_command(folder, command),
        component_id=folder.name, config_id=config_id or folder.name, row_id=row,
        timeout=duration(timeout, "--timeout") or 3600.0, parent_run_id=parent_run_id,
        tables=TableStore(_tables_root(tables_root, home)), log=echo, keep_data=keep_data)
    if home is not None:
        options.files = FileStore(home / FileStore.FOLDER)
        options.states = StateStore(home / StateStore.FOLDER)
        options.jobs = JobStore(home / JobStore.FOLDER)
    job = run_component(cfg, options)
    if summary is not None:
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(job.to_json(indent=2) + "\n")
    if job.result is not None:
        print(json.dumps(job.result))
    line = (f"job {job.id} (run {job.run_id}): {job.state} in {job.duration:.2f} s; "
            f"tables in {len(job.tables_in)}, out {len(job.tables_out)}; files in "
            f"{len(job.files_in)}, out {len(job.files_out)}")
    stderr.print(line, markup=False, highlight=False, soft_wrap=True)
    if not job.succeeded:
        raise LakeportError(job.message)


@app.command()
def jobs(
    config_id: Annotated[str | None, typer.Option(
        "--config-id", help="Only this configuration's jobs.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List the jobs of components with their state, duration and usage (summed at the end)."""
    from rich.table import Table

    from lakeport.cli.remote import print_table
    from lakeport.components import JobStore, sum_usage

    found = JobStore().list(config_id)
    if as_json:
        for job in found:
            print(job.to_json())
        return
    if not found:
        stderr.print("no component jobs", markup=False)
        return
    table = Table("job", "run", "config", "state", "started", "duration", "exit", "usage",
                  "tables in/out", "message", box=None)

    def usage_text(items: dict[str, float]) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in items.items())

    for job in found:
        table.add_row(job.id, job.run_id, job.config_id + (f"/{job.row_id}" if job.row_id
                                                            else ""),
                      job.state, job.started[:19], f"{job.duration:.2f}s",
                      "" if job.exit_code is None else str(job.exit_code),
                      usage_text(sum_usage([job.usage])),
                      f"{len(job.tables_in)}/{len(job.tables_out)}", job.message[:120])
    total = usage_text(sum_usage(j.usage for j in found))
    table.add_row("total", "", "", f"{len(found)} jobs", "", "", "", total, "", "")
    print_table(table)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="The component's name (its folder).",
                                        show_default=False)],
    parent: Annotated[Path, typer.Option("--in", help="Create it in this folder.")] = Path("."),
) -> None:
    """Scaffold a Python component on the public component library with one test case."""
    from lakeport.components.scaffold import create_component

    root = create_component(name, parent)
    stderr.print(f"created {root}; try: lakeport component test {root}", markup=False)


@app.command()
def test(
    component_dir: DirArg,
    command: Annotated[str | None, typer.Option(
        "--command", help="The component's command (default as for run).",
        show_default=False)] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Limit per case.")] = "10m",
) -> None:
    """Run every case (tests/<case>/source/data → expected/data) and compare output tables,
    files, manifests, state, usage and exit code; print a diff on a mismatch."""
    from lakeport.components.testing import resolve_command, run_cases
    from lakeport.errors import Invalid

    folder = component_dir.resolve()
    results = run_cases(folder, resolve_command(folder, command),
                        duration(timeout, "--timeout") or 600.0)
    for result in results:
        print(f"{'ok  ' if result.passed else 'FAIL'} {result.name}")
        for difference in result.differences:
            print("  " + difference.replace("\n", "\n  "))
    failed = [r.name for r in results if not r.passed]
    if failed:
        raise Invalid(f"{len(failed)} of {len(results)} cases failed: {', '.join(failed)}")
    print(f"{len(results)} cases passed")
