"""How a workflow instance moves on: from its nodes' states, which nodes start now, which are
skipped, and the instance's own state; and which nodes a recovery runs again.

Pure functions over a :class:`~lakeport.workflows.definition.WorkflowSpec` and a mapping of
node name → state, so the orchestrator in the server only stores what they decide (each
decision one transaction) and a restarted server decides the same from the stored states.

Node states: ``pending`` (not started), ``queued`` and ``running`` (its task's run is on its
way), ``paused``, ``succeeded``, ``failed``, ``skipped`` (an upstream node did not succeed) and
``cancelled`` (aborted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lakeport.errors import Invalid
from lakeport.workflows.definition import WorkflowSpec, topological_order

NODE_STATES = ("pending", "queued", "running", "paused", "succeeded", "failed", "skipped",
               "cancelled")
ACTIVE = frozenset({"queued", "running", "paused"})
"""A node whose task's run is on its way."""
DONE = frozenset({"succeeded", "failed", "skipped", "cancelled"})
NOT_SUCCEEDED = frozenset({"failed", "skipped", "cancelled"})


@dataclass(frozen=True)
class Step:
    """What to do now: nodes to start (in order), nodes to mark skipped, and the instance's
    state once that is done."""

    start: tuple[str, ...]
    skip: tuple[str, ...]
    state: str  # running | paused | succeeded | failed | cancelled


def next_step(spec: WorkflowSpec, states: Mapping[str, str], *, paused: bool = False,
              running_limit: int | None = None, order: Sequence[str] | None = None) -> Step:
    """The next step of an instance whose nodes are in ``states`` (a node missing from it is
    pending). A pending node starts once every node it runs after succeeded (none while the
    instance is ``paused``; at most ``running_limit`` active at once); one with an upstream
    node that failed, was skipped or cancelled is skipped. ``order`` is the spec's
    :func:`~lakeport.workflows.definition.topological_order` when the caller has it."""
    state = {node.name: states.get(node.name, "pending") for node in spec.nodes}
    after = {node.name: node.after for node in spec.nodes}
    start: list[str] = []
    skip: list[str] = []
    active = sum(1 for value in state.values() if value in ACTIVE)
    for name in order or topological_order(spec):
        if state[name] != "pending":
            continue
        upstream = [state[before] for before in after[name]]
        if any(value in NOT_SUCCEEDED for value in upstream):
            state[name] = "skipped"
            skip.append(name)
        elif all(value == "succeeded" for value in upstream) and not paused and (
                running_limit is None or active < running_limit):
            state[name] = "queued"
            start.append(name)
            active += 1
    return Step(tuple(start), tuple(skip), instance_state(state, paused=paused))


def instance_state(states: Mapping[str, str], *, paused: bool = False) -> str:
    """The instance's state from its nodes': ``running`` while a node is on its way or can
    still start, else ``succeeded`` when every node did, ``cancelled`` when one was
    aborted, ``failed`` otherwise; ``paused`` instead of ``running`` while paused and no node
    is on its way."""
    values = set(states.values())
    if values & ACTIVE:
        return "running"
    if "pending" in values:
        return "paused" if paused else "running"
    if values <= {"succeeded"}:
        return "succeeded"
    return "cancelled" if "cancelled" in values else "failed"


def abort(states: Mapping[str, str]) -> dict[str, str]:
    """The nodes an abort changes: those on their way (their runs are stopped) and those not
    started become ``cancelled``; ended nodes keep their state."""
    return {name: "cancelled" for name, value in states.items()
            if value in ACTIVE or value == "pending"}


def recover(spec: WorkflowSpec, states: Mapping[str, str], from_node: str | None = None
            ) -> dict[str, str]:
    """The nodes a recovery sets back to ``pending``: every node that did not succeed
    (failed, skipped, cancelled), or with ``from_node`` that node and everything downstream
    of it, whatever their state; succeeded nodes keep their state and outputs. Empty when
    nothing is to run again. Nodes on their way are left alone (recover an ended instance)."""
    if from_node is not None:
        after = {node.name: node.after for node in spec.nodes}
        if from_node not in after:
            raise Invalid(f"workflow {spec.name!r} has no node {from_node!r}")
        downstream = {from_node}
        for name in topological_order(spec):
            if any(before in downstream for before in after[name]):
                downstream.add(name)
        return {name: "pending" for name in downstream
                if states.get(name, "pending") not in ACTIVE}
    return {name: "pending" for name, value in states.items() if value in NOT_SUCCEEDED}


__all__ = ["ACTIVE", "DONE", "NODE_STATES", "NOT_SUCCEEDED", "Step", "abort", "instance_state",
           "next_step", "recover"]
