"""How an instance moves on, simulated over random graphs and outcomes: a node starts only
once every upstream node succeeded, a node with an upstream node that did not succeed is
skipped, every node ends, the instance ends succeeded only when every node did; pausing starts
nothing, the running limit holds, abort cancels what has not ended, and a recovery reruns only
what did not succeed (or a chosen node and what follows), keeping what did."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakeport.errors import Invalid
from lakeport.workflows import from_edges
from lakeport.workflows.definition import WorkflowSpec
from lakeport.workflows.progress import ACTIVE, DONE, abort, next_step, recover


@st.composite
def graphs(draw: st.DrawFn) -> WorkflowSpec:
    count = draw(st.integers(1, 25))
    pairs = draw(st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1))
                          .filter(lambda pair: pair[0] < pair[1]), max_size=60))
    return from_edges("w", "p", [(f"n{a}", f"n{b}") for a, b in pairs],
                      tasks=[f"n{i}" for i in range(count)])


def run(spec: WorkflowSpec, states: dict[str, str], fails: set[str], rng: random.Random,
        limit: int | None = None) -> tuple[dict[str, str], list[str]]:
    """Drive an instance to its end: each step's starts become running, then one active node
    at a time (chosen at random) ends as ``fails`` says. The states and the nodes started."""
    started: list[str] = []
    after = {node.name: node.after for node in spec.nodes}
    while True:
        step = next_step(spec, states, running_limit=limit)
        for name in step.skip:
            assert any(states.get(before) in ("failed", "skipped", "cancelled")
                       for before in after[name])
            states[name] = "skipped"
        for name in step.start:
            assert all(states.get(before) == "succeeded" for before in after[name])
            states[name] = "running"
            started.append(name)
        active = [name for name, value in states.items() if value in ACTIVE]
        if limit is not None:
            assert len(active) <= limit
        if not active:
            assert step.state in ("succeeded", "failed")
            return states, started
        assert step.state == "running"
        done = rng.choice(active)
        states[done] = "failed" if done in fails else "succeeded"


@settings(max_examples=80, deadline=None)
@given(graphs(), st.randoms(use_true_random=False), st.data())
def test_an_instance_runs_to_its_end(spec: WorkflowSpec, rng: random.Random,
                                     data: st.DataObject) -> None:
    names = [node.name for node in spec.nodes]
    fails = set(data.draw(st.lists(st.sampled_from(names), max_size=3)))
    limit = data.draw(st.none() | st.integers(1, 4))
    states, started = run(spec, {}, fails, rng, limit)
    assert set(states) == set(names) and set(states.values()) <= DONE
    assert len(started) == len(set(started))  # no node ran twice
    final = next_step(spec, states)
    assert final.state == ("succeeded" if all(v == "succeeded" for v in states.values())
                           else "failed")

    # recovery with the failures fixed: only what did not succeed runs again
    again = recover(spec, states)
    assert set(again) == {name for name, value in states.items() if value != "succeeded"}
    states.update(again)
    states, rerun = run(spec, states, set(), rng, limit)
    assert set(rerun) == set(again) and set(states.values()) == {"succeeded"}

    # recovery from a chosen node: it and everything after it, nothing else
    chosen = data.draw(st.sampled_from(names))
    again = recover(spec, states, chosen)
    assert chosen in again
    for node in spec.nodes:
        if node.name not in again:
            assert not set(node.after) & set(again)


def test_paused_starts_nothing_and_abort_cancels_what_has_not_ended() -> None:
    spec = from_edges("w", "p", [("a", "b"), ("a", "c")])
    assert next_step(spec, {}, paused=True).start == ()
    assert next_step(spec, {}, paused=True).state == "paused"
    states = {"a": "succeeded", "b": "running"}
    assert next_step(spec, states, paused=True).state == "running"  # b is on its way
    assert next_step(spec, states).start == ("c",)
    assert abort({**states, "c": "pending"}) == {"b": "cancelled", "c": "cancelled"}
    assert next_step(spec, {"a": "succeeded", "b": "cancelled", "c": "cancelled"}).state == \
        "cancelled"


def test_recovering_from_a_node_that_does_not_exist() -> None:
    spec = from_edges("w", "p", [("a", "b")])
    with pytest.raises(Invalid, match="has no node 'x'"):
        recover(spec, {"a": "failed"}, "x")
