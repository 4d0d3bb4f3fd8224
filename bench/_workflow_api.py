"""The workflow API calls and graphs of ``bench/workflows.py``."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from _workflow_peer import upstream
from tasks import Service, ms_of

WORKFLOWS = "/api/v1/workflows"
ENDED = ("succeeded", "failed", "cancelled")


def grid(width: int, depth: int, last_task: str = "noop") -> list[dict[str, Any]]:
    """``depth`` levels of ``width`` nodes ``n{level}_{index}``: level 0 starts at once (the
    fan-out), each later node runs after the same and the next index of the level before
    (fan-in 2, see ``_workflow_peer.upstream``). The last node runs ``last_task``."""
    nodes = [{"name": f"n{level}_{index}", "task": "noop",
              "after": [f"n{up}_{at}" for up, at in upstream(level, index, width)]}
             for level in range(depth) for index in range(width)]
    nodes[-1]["task"] = last_task
    return nodes


def chain(length: int) -> list[dict[str, Any]]:
    """``length`` nodes in a line: ``c001`` after ``c000``, and so on."""
    return [{"name": f"c{index:03d}", "task": "noop",
             "after": [f"c{index - 1:03d}"] if index else []} for index in range(length)]


class Workflows:
    """The workflow routes, on the bench's task-service client."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def apply(self, name: str, nodes: list[dict[str, Any]]) -> None:
        await self.service.ok(self.service.http.put(
            f"{WORKFLOWS}/{name}", json={"project": "bench", "nodes": nodes}))

    async def run(self, name: str) -> int:
        record = await self.service.ok(self.service.http.post(
            f"{WORKFLOWS}/{name}/instances", json={"parameters": {}}))
        return int(record["id"])

    async def status(self, instance_id: int) -> dict[str, Any]:
        return await self.service.ok(self.service.http.get(
            f"{WORKFLOWS}/instances/{instance_id}"))

    async def recover(self, instance_id: int) -> dict[str, Any]:
        return await self.service.ok(self.service.http.post(
            f"{WORKFLOWS}/instances/{instance_id}/recover", json={}))

    async def events(self, instance_id: int, after: int = 0) -> list[dict[str, Any]]:
        """Every transition after the id ``after``, a page of 1,000 at a time."""
        found: list[dict[str, Any]] = []
        while True:
            page = (await self.service.ok(self.service.http.get(
                f"{WORKFLOWS}/instances/{instance_id}/events",
                params={"after": after, "limit": 1000})))["items"]
            found += page
            if len(page) < 1000:
                return found
            after = page[-1]["id"]

    async def until_ended(self, name: str, instance_id: int, timeout: float,
                          say: Callable[[str], None]) -> dict[str, Any]:
        """Poll the workflow's history (one row, no nodes: light on the server) every 0.2 s
        until the instance has ended; then its full status."""
        deadline = time.monotonic() + timeout
        shown = 0.0
        while True:
            items = (await self.service.ok(self.service.http.get(
                f"{WORKFLOWS}/{name}/instances", params={"limit": 1})))["items"]
            row = next((item for item in items if item["id"] == instance_id), None)
            if row is not None and row["state"] in ENDED:
                return await self.status(instance_id)
            if time.monotonic() > deadline:
                status = await self.status(instance_id)
                raise RuntimeError(f"instance {instance_id} of {name} did not end in "
                                   f"{timeout:.0f} s: {status['counts']}")
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                say(f"{name}: instance {instance_id} {row['state'] if row else '?'}")
            await asyncio.sleep(0.2)


def attempts(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [attempt for node in status["nodes"] for attempt in node["attempts"]]


def runs_of(status: dict[str, Any]) -> set[int]:
    """The ids of every run the instance's nodes have had."""
    return {attempt["run"] for attempt in attempts(status)}


def wall_s(status: dict[str, Any]) -> float:
    """The instance's wall time: created → ended (server clock)."""
    return (ms_of(status["ended"]) - ms_of(status["created"])) / 1000


def task_s(status: dict[str, Any]) -> float:
    """The tasks' own run time: the sum of their attempts' durations."""
    return sum(attempt["seconds"] or 0.0 for attempt in attempts(status))


def edge_gaps_ms(status: dict[str, Any]) -> list[float]:
    """For each edge of a chain: the next node's first attempt started - the previous node's
    last attempt ended (server clock, ms)."""
    nodes = status["nodes"]
    gaps = []
    for before, then in itertools.pairwise(nodes):
        if before["attempts"] and then["attempts"]:
            gaps.append(ms_of(then["attempts"][0]["started"])
                        - ms_of(before["attempts"][-1]["ended"]))
    return gaps
