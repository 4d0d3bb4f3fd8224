"""``lakeport workflows ...``: workflows of a lakeport server's tasks (apply a YAML file, run it
with parameters, follow an instance's graph live, abort, pause, resume, recover, history)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from lakeport.cli.common import parse_pairs, short_time, stderr, stdout
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

if TYPE_CHECKING:
    from lakeport.client import Client

app = typer.Typer(
    help="Workflows: tasks of the task service (lakeport tasks --help) as the nodes of a "
    "graph, run in sequence or in parallel as instances with parameters. A node gets files "
    "from the nodes before it, has retries and a timeout; a failure skips what follows "
    "until the instance is recovered. The graph is a YAML file (see: lakeport workflows "
    "apply --help).\n\n"
    "Example: lakeport workflows apply flow.yaml && lakeport workflows run daily-report "
    "-p day=2026-01-01 --watch",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(
    help="Workflow name (1-128 of A-Z a-z 0-9 _ . -).", show_default=False)]
InstanceArg = Annotated[int, typer.Argument(
    help="Instance id (from workflows run or workflows history).", show_default=False)]
VersionOption = Annotated[int | None, typer.Option(
    "--version", help="This version of the workflow (default: the newest).",
    show_default=False)]
WatchOption = Annotated[bool, typer.Option(
    "--watch", help="Redraw the graph until the instance ends; exit 1 unless it succeeded.")]

ENDED = ("succeeded", "failed", "cancelled")
STATE_STYLES = {"pending": "dim", "queued": "yellow", "running": "cyan",
                "paused": "magenta", "succeeded": "green", "failed": "bold red",
                "skipped": "dim", "cancelled": "red"}
"""The colour of each instance and node state in the graph."""
HISTORY_COLUMNS = ("id", "version", "state", "trigger", "parameters", "recoveries",
                   "created", "ended")
POLL = 1.0
"""Seconds between two looks at an instance while watching it."""


# -- the graph of an instance -------------------------------------------------------------------
def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def _node_label(node: Mapping[str, Any], upstream: Sequence[str]) -> Text:
    attempts = node.get("attempts") or []
    label = Text.assemble((str(node["name"]), "bold"), ": ", _state(str(node.get("state"))))
    if attempts:
        label.append(f"  {len(attempts)} attempt{'s' if len(attempts) != 1 else ''}")
    if node.get("run") is not None:
        label.append(f"  run {node['run']}")
    if node.get("task"):
        label.append(f"  {node['task']}", style="dim")
    if len(upstream) > 1:
        label.append(f"  (after {', '.join(upstream)})", style="italic")
    last = attempts[-1] if attempts else None
    if node.get("state") == "failed" and last is not None:
        why = last.get("reason") or (f"exit code {last['exit_code']}"
                                     if last.get("exit_code") is not None else None)
        if why:
            label.append(f"  {why}", style="red")
    return label


def _root_label(record: Mapping[str, Any]) -> Text:
    state = str(record.get("state"))
    label = Text.assemble((f"instance {record.get('id')}", "bold"),
                          f" of {record.get('workflow')} v{record.get('version')}: ",
                          _state(state))
    if record.get("paused") and state != "paused":
        label.append(" (pausing)", style="magenta")
    counts = record.get("counts") or {}
    if counts:
        label.append("  " + ", ".join(f"{count} {name}" for name, count in counts.items()),
                     style="dim")
    if record.get("recoveries"):
        label.append(f"  recovered {record['recoveries']}x", style="dim")
    return label


def status_tree(record: Mapping[str, Any]) -> Tree:
    """An instance's graph as a tree: each node under the first node it runs after (the ones
    with several upstream nodes say ``(after a, b)``), with its state in colour, its number
    of attempts, its run and its task."""
    nodes = list(record.get("nodes") or [])
    names = {str(node["name"]) for node in nodes}
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    upstream: dict[str, list[str]] = {}
    for node in nodes:
        after = [str(name) for name in node.get("after") or []]
        upstream[str(node["name"])] = after
        parent = next((name for name in after if name in names), None)
        children.setdefault(parent, []).append(node)
    tree = Tree(_root_label(record), guide_style="dim")
    placed: set[str] = set()

    def add(branch: Tree, parent: str | None) -> None:
        for node in children.get(parent, []):
            name = str(node["name"])
            if name in placed:  # only in a record whose graph has a cycle
                continue
            placed.add(name)
            add(branch.add(_node_label(node, upstream[name])), name)

    add(tree, None)
    for node in nodes:  # nodes whose first upstream node is not reachable (a cycle)
        if str(node["name"]) not in placed:
            placed.add(str(node["name"]))
            tree.add(_node_label(node, upstream[str(node["name"])]))
    return tree


def print_tree(tree: Tree) -> None:
    """Print a tree: in colour in a terminal, whole lines in a pipe or file."""
    if stdout.is_terminal:
        stdout.print(tree)
    else:
        Console(highlight=False, width=100_000).print(tree)


def show_status(record: Mapping[str, Any], as_json: bool) -> None:
    """An instance's status as its graph (or its JSON record)."""
    if as_json:
        show_record(record, True)
    else:
        print_tree(status_tree(record))


async def follow(client: Client, instance_id: int, live: bool) -> dict[str, Any]:
    """Look at an instance until it ends, redrawing its graph in place when ``live`` (in a
    terminal: elsewhere the final graph is printed once, by the caller); its final status."""
    record = await client.workflows.status(instance_id)
    if not (live and stdout.is_terminal):
        return await client.workflows.wait(instance_id, poll=POLL) \
            if record["state"] not in ENDED else record
    from rich.live import Live

    with Live(status_tree(record), console=stdout, auto_refresh=False) as view:
        while record["state"] not in ENDED:
            await asyncio.sleep(POLL)
            record = await client.workflows.status(instance_id)
            view.update(status_tree(record), refresh=True)
    return record


def _end(record: Mapping[str, Any], as_json: bool, shown: bool) -> None:
    """Show an ended instance (unless its graph is on the screen already); exit 1 unless it
    succeeded."""
    if as_json or not shown:
        show_status(record, as_json)
    if record["state"] != "succeeded":
        raise typer.Exit(1)


# -- definitions ----------------------------------------------------------------------------
@app.command()
def apply(file: Annotated[Path, typer.Argument(
              help="A workflow file (.yaml, .yml or .json).", show_default=False)],
          as_json: JsonOption = False, url: ServerOption = None,
          api_key: ApiKeyOption = None) -> None:
    """Create a workflow from a file, or give it a new version when the file changed.

    The file (YAML or JSON) is checked before anything is sent: a duplicate key, a cycle,
    a node after one that does not exist, or an undeclared parameter is one line naming
    the file and line. Without version: N a changed file becomes the next version.

    A node has a name and a task (TASK of the project, or PROJECT/TASK); optionally after
    (the nodes it waits for), parameters (values may use {{ param }}), retries, timeout
    (seconds), concurrency and inputs (files of earlier nodes' out/ put into its in/).
    Triggers start instances on a cron expression or for files landing in the lake.

    Example file:

    name: daily-report
    project: plant
    parameters: \\[day]
    nodes:
      - {name: aggregate, task: aggregate, parameters: {day: "{{ day }}"}}
      - {name: report, task: render, after: \\[aggregate], retries: {count: 2},
         inputs: \\[{from: aggregate, file: summary.csv}]}
    triggers:
      - {kind: cron, expression: "0 6 * * *", parameters: {day: today}}

    Example: lakeport workflows apply flow.yaml
    """
    from lakeport.workflows.files import load_workflow_file

    definition = load_workflow_file(file)
    record = call(url, api_key, lambda c: c.workflows.apply(definition))
    if as_json:
        show_record(record, True)
        return
    name, version, change = record["name"], record["version"], record.get("change")
    if change == "unchanged":
        stderr.print(f"workflow {name} unchanged (version {version})", markup=False)
    elif change == "new version":
        stderr.print(f"workflow {name}: new version {version}", markup=False)
    else:
        stderr.print(f"created workflow {name} version {version}", markup=False)


@app.command("ls")
def ls(as_json: JsonOption = False, url: ServerOption = None,
       api_key: ApiKeyOption = None) -> None:
    """List the workflows you may read, with their active instances.

    Example: lakeport workflows ls
    """
    from lakeport.client.workflows import WORKFLOW_COLUMNS

    rows = call(url, api_key, lambda c: c.workflows.list())
    if not as_json:
        rows = [{**row, "triggers": ", ".join(row.get("triggers") or ()),
                 "updated": short_time(row.get("updated"))} for row in rows]
    show_records(rows, as_json, None if as_json else WORKFLOW_COLUMNS,
                 "no workflows: make one with lakeport workflows apply FILE")


def _inputs(node: Mapping[str, Any]) -> str | None:
    links = [f"{link['from']}:{link['file']}" + (f" as {link['as']}" if link.get("as") else "")
             for link in node.get("inputs") or []]
    return ", ".join(links) or None


def _trigger_text(trigger: Mapping[str, Any]) -> str:
    kind = trigger.get("kind")
    if kind == "cron":
        return f"cron '{trigger.get('expression')}' {trigger.get('timezone', 'UTC')}"
    if kind == "files":
        return f"files {trigger.get('path')}"
    if kind == "topic":
        return f"topic {trigger.get('topic')}"
    return str(kind)


@app.command()
def show(name: NameArg, version: VersionOption = None, as_json: JsonOption = False,
         url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Show a workflow: its project, parameters, versions, triggers and nodes.

    Example: lakeport workflows show daily-report --version 1
    """
    from lakeport.client.results import to_table

    record = call(url, api_key, lambda c: c.workflows.show(name, version))
    if as_json:
        show_record(record, True)
        return
    latest = record.get("latest")
    shown = {"workflow": record["name"],
             "version": record["version"] if latest in (None, record["version"])
             else f"{record['version']} (newest: {latest})",
             "project": record.get("project"), "owner": record.get("owner"),
             "description": record.get("description") or None,
             "parameters": ", ".join(record.get("parameters") or ()) or None,
             "max_active_instances": record.get("max_active_instances"),
             "triggers": "; ".join(_trigger_text(t) for t in record.get("triggers") or ())
             or None,
             "versions": ", ".join(str(v["version"]) for v in record.get("versions") or ()),
             "updated": short_time(record.get("updated"))}
    show_record({key: value for key, value in shown.items() if value is not None}, False)
    rows = [{"node": node["name"], "task": node["task"],
             "after": ", ".join(node.get("after") or ()) or None,
             "parameters": node.get("parameters") or None,
             "retries": (node.get("retries") or {}).get("count"),
             "timeout": node.get("timeout"), "inputs": _inputs(node),
             "concurrency": node.get("concurrency")} for node in record.get("nodes") or []]
    if rows:
        columns = [column for column in rows[0]
                   if any(row[column] is not None for row in rows)]
        table = to_table(rows, columns)
        table.box = None
        print_table(table)


@app.command()
def rm(name: NameArg, url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Delete a workflow with its instances (refused while one is active: abort it first).

    Example: lakeport workflows rm daily-report
    """
    call(url, api_key, lambda c: c.workflows.delete(name))
    stderr.print(f"deleted workflow {name}", markup=False)


# -- instances ----------------------------------------------------------------------------
@app.command()
def run(name: NameArg,
        param: Annotated[list[str] | None, typer.Option(
            "--param", "-p", help="Parameter KEY=VALUE of the instance (repeatable).",
            show_default=False)] = None,
        version: VersionOption = None,
        wait: Annotated[bool, typer.Option(
            "--wait", help="Wait for the instance to end; exit 1 unless it succeeded.")]
        = False,
        watch: WatchOption = False,
        as_json: JsonOption = False, url: ServerOption = None,
        api_key: ApiKeyOption = None) -> None:
    """Run a workflow: an instance with parameters, on copies of its tasks.

    Example: lakeport workflows run daily-report -p day=2026-01-01 --watch
    """
    parameters = parse_pairs(param, "--param")

    async def go(client: Client) -> tuple[dict[str, Any], dict[str, Any] | None]:
        started = await client.workflows.run(name, parameters, version=version)
        if not (wait or watch):
            return started, None
        if not as_json:
            stderr.print(f"instance {started['id']} of {name} {started['state']}",
                         markup=False)
        return started, await follow(client, started["id"], watch and not as_json)

    started, final = call(url, api_key, go)
    if final is None:
        show_status(started, as_json)
        return
    _end(final, as_json, watch and not as_json and stdout.is_terminal)


@app.command()
def status(instance_id: InstanceArg, watch: WatchOption = False, as_json: JsonOption = False,
           url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Show an instance's graph: each node's state, attempts, run and task.

    A node's output: lakeport tasks logs RUN (--attempt N, --stderr).

    Example: lakeport workflows status 12 --watch
    """
    if not watch:
        show_status(call(url, api_key, lambda c: c.workflows.status(instance_id)), as_json)
        return
    final = call(url, api_key, lambda c: follow(c, instance_id, not as_json))
    _end(final, as_json, not as_json and stdout.is_terminal)


def _control(action: str, doc: str) -> None:
    def command(instance_id: InstanceArg, as_json: JsonOption = False,
                url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
        record = call(url, api_key, lambda c: getattr(c.workflows, action)(instance_id))
        show_status(record, as_json)

    command.__doc__ = f"{doc}\n\nExample: lakeport workflows {action} 12"
    app.command(action)(command)


_control("abort", "Abort an instance: its running nodes' runs are stopped, the rest cancelled.")
_control("pause", "Pause an instance: running nodes finish, no other node starts.")
_control("resume", "Let a paused instance go on.")


@app.command()
def recover(instance_id: InstanceArg,
            from_node: Annotated[str | None, typer.Option(
                "--from", help="Run this node and everything after it again (default: the "
                "nodes that failed or were cancelled, and what they skipped).",
                show_default=False)] = None,
            watch: WatchOption = False, as_json: JsonOption = False,
            url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Run an ended instance again, keeping the nodes that succeeded.

    Example: lakeport workflows recover 12 --from report --watch
    """
    async def go(client: Client) -> tuple[dict[str, Any], dict[str, Any] | None]:
        record = await client.workflows.recover(instance_id, from_node)
        return record, (await follow(client, instance_id, not as_json) if watch else None)

    record, final = call(url, api_key, go)
    if final is None:
        show_status(record, as_json)
        return
    _end(final, as_json, not as_json and stdout.is_terminal)


@app.command()
def history(name: NameArg,
            state: Annotated[list[str] | None, typer.Option(
                "--state", help="Only instances in this state: queued, running, paused, "
                "succeeded, failed, cancelled (repeatable).", show_default=False)] = None,
            limit: LimitOption = None, as_json: JsonOption = False,
            url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """List a workflow's instances, newest first.

    Example: lakeport workflows history daily-report --state failed --limit 10
    """
    rows = call(url, api_key, lambda c: c.workflows.history(name, state=state, limit=limit))
    if not as_json:
        rows = [{**row, "state": f"{row['state']} (paused)" if row.get("paused")
                 and row["state"] != "paused" else row["state"],
                 "parameters": row.get("parameters") or None,
                 "recoveries": row.get("recoveries") or None,
                 "created": short_time(row.get("created")),
                 "ended": short_time(row.get("ended"))} for row in rows]
    show_records(rows, as_json, None if as_json else HISTORY_COLUMNS,
                 f"no instances of {name}: start one with lakeport workflows run {name}")


@app.command()
def mapping(instance_id: InstanceArg, as_json: JsonOption = False,
            url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """List each node's task and the instance's copy of it.

    A node's runs (ids in `lakeport workflows status ID --json`): lakeport tasks run RUN,
    lakeport tasks logs RUN.

    Example: lakeport workflows mapping 12
    """
    from lakeport.client.workflows import MAPPING_COLUMNS

    rows = call(url, api_key, lambda c: c.workflows.mapping(instance_id))
    show_records(rows, as_json, None if as_json else MAPPING_COLUMNS,
                 f"instance {instance_id} has no nodes")


__all__ = ["app", "follow", "print_tree", "show_status", "status_tree"]
