"""``lakeport workflows status``: an instance's graph drawn as a tree from its status record (a
chain, a fan-out that joins again, each node's state, attempts and run)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from lakeport.cli.workflows import STATE_STYLES, status_tree


def node(name: str, after: list[str], state: str, attempts: int = 0, run: int | None = None,
         **fields: Any) -> dict[str, Any]:
    tries = [{"run": run, "number": number, "state": "failed" if number < attempts else state,
              "exit_code": None, "reason": None} for number in range(1, attempts + 1)]
    return {"name": name, "after": after, "state": state, "task": f"plant/{name}",
            "copy": f"plant/{name}@7", "run": run, "attempts": tries, **fields}


def record(nodes: list[dict[str, Any]], state: str = "running", **fields: Any
           ) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for item in nodes:
        counts[item["state"]] = counts.get(item["state"], 0) + 1
    return {"id": 7, "workflow": "flow", "version": 1, "state": state, "paused": False,
            "recoveries": 0, "counts": counts, "nodes": nodes, **fields}


def text(status: dict[str, Any], colour: bool = False) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=200, color_system="truecolor" if colour else None,
            force_terminal=colour).print(status_tree(status))
    return out.getvalue().splitlines()


def test_a_chain_is_drawn_one_node_under_the_other() -> None:
    lines = text(record([node("t1", [], "succeeded", 1, 10), node("t2", ["t1"], "running", 1, 11),
                         node("t3", ["t2"], "pending")]))
    assert lines == [
        "instance 7 of flow v1: running  1 succeeded, 1 running, 1 pending",
        "└── t1: succeeded  1 attempt  run 10  plant/t1",
        "    └── t2: running  1 attempt  run 11  plant/t2",
        "        └── t3: pending  plant/t3",
    ]


def test_a_fan_out_and_in_hangs_the_join_under_its_first_upstream_node() -> None:
    lines = text(record([
        node("split", [], "succeeded", 1, 1),
        node("a", ["split"], "succeeded", 1, 2), node("b", ["split"], "failed", 3, 3),
        node("c", ["split"], "cancelled", 1, 4),
        node("join", ["a", "b", "c"], "skipped"), node("lonely", [], "queued", run=5)],
        state="failed"))
    assert lines == [
        "instance 7 of flow v1: failed  2 succeeded, 1 failed, 1 cancelled, 1 skipped, "
        "1 queued",
        "├── split: succeeded  1 attempt  run 1  plant/split",
        "│   ├── a: succeeded  1 attempt  run 2  plant/a",
        "│   │   └── join: skipped  plant/join  (after a, b, c)",
        "│   ├── b: failed  3 attempts  run 3  plant/b",
        "│   └── c: cancelled  1 attempt  run 4  plant/c",
        "└── lonely: queued  run 5  plant/lonely",
    ]


def test_states_are_coloured_and_a_failure_says_why() -> None:
    failed = node("b", [], "failed", 2, 3)
    failed["attempts"][-1].update(exit_code=3)
    lines = text(record([node("a", [], "succeeded", 1, 2), failed], state="failed"))
    assert lines[2].endswith("plant/b  exit code 3")
    failed["attempts"][-1].update(reason="timed out after 10s")
    assert text(record([failed]))[1].endswith("timed out after 10s")
    coloured = "\n".join(text(record([node("a", [], "succeeded"), failed], state="failed"),
                              colour=True))
    green, red = "\x1b[32msucceeded", "\x1b[1;31mfailed"
    assert green in coloured and red in coloured
    assert set(STATE_STYLES) >= {"pending", "queued", "running", "paused", "succeeded",
                                 "failed", "skipped", "cancelled"}


def test_a_pausing_instance_and_nodes_whose_upstream_is_missing() -> None:
    status = record([node("gone-after", ["deleted"], "pending")], paused=True, recoveries=2)
    assert text(status) == [
        "instance 7 of flow v1: running (pausing)  1 pending  recovered 2x",
        "└── gone-after: pending  plant/gone-after",
    ]
    assert text(record([]))[0] == "instance 7 of flow v1: running"
