"""``client.workflows``: workflows of the task service's tasks, their instances and history, in
the shape the users of the seed's workflows know (create from edges, run, status, history,
mapping, abort, recover).

>>> await client.workflows.create("seed", project="plant", edges=[("t1", "t2")])
>>> await client.workflows.apply("flow.yaml")          # the YAML form, a new version if changed
>>> instance = await client.workflows.run("daily-report", {"day": "2026-01-01"})
>>> final = await client.workflows.wait(instance["id"], timeout=600)
>>> [(node["name"], node["state"]) for node in final["nodes"]]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lakeport.client import paging
from lakeport.client.http import Http
from lakeport.client.results import ResultFormat, check_format, shape
from lakeport.client.transfer import quote_segment
from lakeport.errors import Invalid
from lakeport.units import parse_duration

ENDED = frozenset({"succeeded", "failed", "cancelled"})
"""Instance states an instance leaves only when it is recovered."""
STATES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")
NODE_STATES = ("pending", "queued", "running", "paused", "succeeded", "failed", "skipped",
               "cancelled")
WORKFLOW_COLUMNS = ("name", "version", "owner", "project", "nodes", "triggers", "active",
                    "queued", "updated")
INSTANCE_COLUMNS = ("id", "workflow", "version", "state", "paused", "trigger", "parameters",
                    "recoveries", "created", "started", "ended")
MAPPING_COLUMNS = ("node", "task", "version", "copy")
EVENT_COLUMNS = ("id", "node", "state", "detail", "at")
MAX_POLL = 5.0
"""The longest pause between two looks at an instance in :meth:`Workflows.wait`."""
EVENT_PAGE = 1000
CHANGES = {200: "unchanged", 201: "created"}


def _definition(source: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A definition from a mapping or a file, checked locally (Invalid in one line)."""
    from lakeport.workflows.files import check_definition, load_workflow_file

    if isinstance(source, str | Path):
        return load_workflow_file(source)
    if not isinstance(source, Mapping):
        raise Invalid(f"bad workflow {source!r}: use a mapping (name, project, nodes) or the "
                      "path of a .yaml or .json file")
    data = dict(source)
    check_definition(data)
    return data


class Workflows:
    """Workflows: tasks as the nodes of a graph, run as instances on copies of the tasks."""

    def __init__(self, http: Http) -> None:
        self._http = http

    @staticmethod
    def _path(name: str) -> str:
        return f"/workflows/{quote_segment(name)}"

    @staticmethod
    def _instance(instance_id: int) -> str:
        return f"/workflows/instances/{int(instance_id)}"

    # -- definitions --------------------------------------------------------------------------
    async def create(self, name: str, *, edges: Iterable[Sequence[str]] | None = None,
                     project: str | None = None, tasks: Iterable[str] = (),
                     version: int | None = None,
                     nodes: Sequence[Mapping[str, Any]] | None = None,
                     **fields: Any) -> dict[str, Any]:
        """Create a workflow, or a new version of it, from the seed's form (``edges``
        between tasks of ``project``: ``[("t1", "t2")]``; ``tasks`` adds tasks without an
        edge) or from ``nodes`` (dicts with ``name``, ``task``, ``after``, ``parameters``,
        ``retries``, ``timeout``, ``inputs``; ``fields`` such as ``parameters``,
        ``description``, ``triggers``, ``max_active_instances``). Without ``version`` an
        unchanged definition keeps its version and a changed one gets the next. The record,
        with ``change``: ``created``, ``new version`` or ``unchanged``."""
        if (edges is None) == (nodes is None):
            raise Invalid(f"workflow {name!r}: give edges (the seed's form) or nodes")
        body: dict[str, Any] = {"name": name}
        if project is not None:
            body["project"] = project
        if version is not None:
            body["version"] = version
        if edges is not None:
            if fields:
                raise Invalid(f"workflow {name!r}: {sorted(fields)[0]!r} does not go with "
                              "edges (use nodes)")
            body["edges"] = [list(edge) for edge in edges]
            body["tasks"] = list(tasks)
        else:
            if tuple(tasks):
                raise Invalid(f"workflow {name!r}: tasks goes with edges, not nodes")
            body.update(fields)
            body["nodes"] = [dict(node) for node in nodes or ()]
        return await self.apply(body)

    async def apply(self, definition: Mapping[str, Any] | str | Path) -> dict[str, Any]:
        """Apply a definition (a mapping with ``name``, or the path of a ``.yaml``/``.yml``/
        ``.json`` file, checked locally first): the workflow is created, gets a new version
        when it changed, or stays as it is. The record, with ``change``: ``created``,
        ``new version`` or ``unchanged``."""
        body = _definition(definition)
        response = await self._http.request("PUT", self._path(body["name"]), json=body)
        record: dict[str, Any] = response.json()
        change = CHANGES.get(response.status_code, "created")
        if change == "created" and len(record.get("versions") or ()) > 1:
            change = "new version"
        record["change"] = change
        return record

    async def list(self, *, format: ResultFormat = "json") -> Any:
        """The workflows the caller may read: version, owner, project, node count, trigger
        kinds, active (running or paused) and queued instances."""
        check_format(format)
        items = (await self._http.json("GET", "/workflows"))["items"]
        return shape(items, format, WORKFLOW_COLUMNS)

    async def show(self, name: str, version: int | None = None) -> dict[str, Any]:
        """A workflow's definition (its newest version, or ``version``) with its versions."""
        return await self._http.json("GET", self._path(name), params={"version": version})

    async def delete(self, name: str) -> None:
        """Delete a workflow with its instances and their task copies (Conflict while an
        instance is active: abort it first)."""
        await self._http.request("DELETE", self._path(name))

    # -- instances ----------------------------------------------------------------------------
    async def run(self, name: str, parameters: Mapping[str, Any] | None = None, *,
                  version: int | None = None) -> dict[str, Any]:
        """Start an instance (the seed's ``initiate``) of the newest version, or ``version``,
        with ``parameters``; its status record (``queued`` while the workflow's
        ``max_active_instances`` are active)."""
        body = {"parameters": dict(parameters or {}), "version": version}
        return await self._http.json("POST", f"{self._path(name)}/instances", json=body)

    async def status(self, instance_id: int) -> dict[str, Any]:
        """An instance's status: its state, ``counts`` of node states, and each node with its
        state, task, copy, run and attempts (with their logs and outputs)."""
        return await self._http.json("GET", self._instance(instance_id))

    async def wait(self, instance_id: int, timeout: float | str | None = None,
                   poll: float = 0.5) -> dict[str, Any]:
        """The instance's status once it has ended (succeeded, failed or cancelled), looking
        every ``poll`` seconds at first, then less often (up to every 5s); TimeoutError naming
        its state when ``timeout`` passes first."""
        seconds = None if timeout is None else parse_duration(timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        pause = poll
        while True:
            record = await self.status(instance_id)
            if record["state"] in ENDED:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"instance {instance_id} is still {record['state']} after "
                                   f"{seconds:g}s")
            await asyncio.sleep(pause if deadline is None
                                else max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 1.5, max(poll, MAX_POLL))

    async def _control(self, instance_id: int, action: str, safe: bool,
                       body: Any = None) -> dict[str, Any]:
        return await self._http.json("POST", f"{self._instance(instance_id)}/{action}",
                                     json=body, safe=safe)

    async def abort(self, instance_id: int) -> dict[str, Any]:
        """Abort an instance: its running nodes' runs are stopped, the rest cancelled; its
        status record."""
        return await self._control(instance_id, "abort", False)

    async def pause(self, instance_id: int) -> dict[str, Any]:
        """Pause an instance: running nodes finish, no other starts; its status record."""
        return await self._control(instance_id, "pause", True)

    async def resume(self, instance_id: int) -> dict[str, Any]:
        """Let a paused instance go on; its status record."""
        return await self._control(instance_id, "resume", True)

    async def recover(self, instance_id: int, from_node: str | None = None) -> dict[str, Any]:
        """Run an ended instance again from its failed and cancelled nodes, keeping what
        succeeded (or from ``from_node`` and everything after it); its status record."""
        return await self._control(instance_id, "recover", False, {"from_node": from_node})

    async def history(self, name: str, *, state: str | Sequence[str] | None = None,
                      limit: int | None = None, format: ResultFormat = "json") -> Any:
        """The workflow's instances, newest first (every page, at most ``limit``), of
        ``state`` (one or several) when given (the seed's ``getHistory``)."""
        check_format(format)
        states = [state] if isinstance(state, str) else [*state] if state else None
        items = await paging.collect(self._http, f"{self._path(name)}/instances",
                                     {"state": states}, limit=limit)
        return shape(items, format, INSTANCE_COLUMNS)

    async def mapping(self, instance_id: int, *, format: ResultFormat = "json") -> Any:
        """Each node's task and the instance's copy of it (the seed's ``getMapping``)."""
        check_format(format)
        answer = await self._http.json("GET", f"{self._instance(instance_id)}/mapping")
        return shape(answer["items"], format, MAPPING_COLUMNS)

    async def events(self, instance_id: int, after: int = 0, *,
                     format: ResultFormat = "json") -> Any:
        """The instance's transitions after the event id ``after`` (``node`` None: the
        instance's own), oldest first."""
        check_format(format)
        items: list[dict[str, Any]] = []
        while True:
            answer = await self._http.json("GET", f"{self._instance(instance_id)}/events",
                                           params={"after": after, "limit": EVENT_PAGE})
            items.extend(answer["items"])
            if len(answer["items"]) < EVENT_PAGE:
                return shape(items, format, EVENT_COLUMNS, times=("at",))
            after = answer["items"][-1]["id"]


__all__ = ["ENDED", "EVENT_COLUMNS", "INSTANCE_COLUMNS", "MAPPING_COLUMNS", "NODE_STATES",
           "STATES", "WORKFLOW_COLUMNS", "Workflows"]
