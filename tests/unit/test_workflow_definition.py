"""Workflow definitions: the seed's edge list and the YAML form give the same graph; cycles,
unknown nodes, files taken from nodes that do not run before, and undeclared parameters are
one-line errors naming the nodes; any acyclic graph is ordered with each node after its
upstream nodes."""

from __future__ import annotations

import itertools
import textwrap

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lakeport.errors import Invalid
from lakeport.workflows import definition, from_edges, parse_workflow, topological_order

FLOW = textwrap.dedent(definition.__doc__.split("::\n", 1)[1].split("\n\n", 1)[0])
"""The YAML example of the module's documentation."""


def test_the_documented_yaml_form() -> None:
    spec = parse_workflow(yaml.safe_load(FLOW))
    assert (spec.name, spec.version, spec.project) == ("daily-report", 2, "plant")
    report = spec.node("report")
    assert report.task_ref(spec.project) == ("reports", "render")
    assert spec.node("aggregate").task_ref(spec.project) == ("plant", "aggregate")
    assert report.retries is not None and report.retries.count == 2
    assert (report.inputs[0].source, report.inputs[0].file, report.inputs[0].target) == (
        "aggregate", "summary.csv", "input.csv")
    assert topological_order(spec) == ["aggregate", "report"]


def test_the_seeds_edges_with_parallel_branches_joining() -> None:
    spec = from_edges("join", "plant", [("t1", "a"), ("t1", "b"), ("t1", "c"), ("a", "t2"),
                                        ("b", "t2"), ("c", "t2")], tasks=["lonely"])
    order = topological_order(spec)
    assert order.index("t1") < min(order.index(x) for x in "abc")
    assert order.index("t2") > max(order.index(x) for x in "abc")
    assert sorted(spec.node("t2").after) == ["a", "b", "c"]
    assert spec.node("lonely").after == []


@pytest.mark.parametrize(("change", "message"), [
    ({"nodes": [{"name": "a", "task": "a"}, {"name": "a", "task": "b"}]},
     "two nodes are called 'a'"),
    ({"nodes": [{"name": "a", "task": "a", "after": ["ghost"]}]},
     "node 'a' runs after 'ghost', which is not a node"),
    ({"nodes": [{"name": "a", "task": "a", "after": ["a"]}]}, "node 'a' runs after itself"),
    ({"nodes": [{"name": "a", "task": "a", "after": ["c"]}, {"name": "b", "task": "b",
                                                             "after": ["a"]},
                {"name": "c", "task": "c", "after": ["b"]}]}, "cycle a → b → c → a"),
    ({"nodes": [{"name": "a", "task": "a"}, {"name": "b", "task": "b",
                                             "inputs": [{"from": "a", "file": "x.csv"}]}]},
     "node 'b' takes 'x.csv' from 'a', which does not run before it"),
    ({"nodes": [{"name": "a", "task": "a", "parameters": {"d": "{{ day }}"}}]},
     "node 'a' parameter 'd' uses {{ day }}, which the workflow does not declare"),
    ({"nodes": [{"name": "a", "task": "a/b/c"}]}, "bad task 'a/b/c'"),
    ({"nodes": [{"name": "a", "task": "a", "inputs": [{"from": "a", "file": "../x"}]}]},
     "must be a relative path"),
    ({"nodes": []}, "nodes: List should have at least 1 item"),
    ({"nodes": [{"name": "a", "task": "a", "colour": "red"}]}, "nodes.0.colour"),
])
def test_bad_definitions_are_one_line_naming_what(change: dict, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_workflow({"name": "w", "project": "plant", **change})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_not_a_mapping() -> None:
    with pytest.raises(Invalid, match="expected a mapping"):
        parse_workflow(["a", "b"])


@st.composite
def acyclic(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Edges of a random DAG: node i runs only after nodes with a smaller index."""
    count = draw(st.integers(2, 30))
    pairs = st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)).filter(
        lambda pair: pair[0] < pair[1])
    return [(f"n{a}", f"n{b}") for a, b in draw(st.lists(pairs, min_size=1, max_size=80))]


@settings(max_examples=60, deadline=None)
@given(acyclic(), st.randoms())
def test_any_dag_is_ordered_and_one_back_edge_is_a_cycle(edges: list[tuple[str, str]],
                                                         rng: object) -> None:
    spec = from_edges("w", "p", edges)
    order = topological_order(spec)
    assert sorted(order) == sorted({name for edge in edges for name in edge})
    for before, then in edges:
        assert order.index(before) < order.index(then)
    before, then = rng.choice(edges)  # type: ignore[attr-defined]
    with pytest.raises(Invalid, match="cycle") as caught:
        from_edges("w", "p", [*edges, (then, before)])
    cycle = str(caught.value).split("cycle ", 1)[1].split(" → ")
    assert cycle[0] == cycle[-1] and len(cycle) >= 3
    for node, follower in itertools.pairwise(cycle):
        assert (node, follower) in [*edges, (then, before)]


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_NODE = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "c", "", "a/b"]) | st.text(max_size=6),
     "task": st.sampled_from(["a", "b", "p/c", "x/y/z"]) | _JSON},
    optional={"after": st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=3) | _JSON,
              "inputs": st.lists(st.fixed_dictionaries(
                  {"from": st.sampled_from(["a", "b", "c"]),
                   "file": st.sampled_from(["x.csv", "../x", "/abs", ""])}), max_size=2),
              "parameters": st.dictionaries(st.sampled_from(["p", "q"]),
                                            st.sampled_from(["{{ day }}", "{{ x }}", "1"])),
              "retries": _JSON, "timeout": _JSON})


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"name": st.just("w"), "project": st.just("p"),
                              "nodes": st.lists(_NODE, max_size=5)},
                             optional={"parameters": st.lists(st.sampled_from(["day", "x"])),
                                       "version": _JSON, "extra": _JSON}) | _JSON)
def test_any_input_is_a_workflow_or_one_line_invalid(data: object) -> None:
    try:
        spec = parse_workflow(data)
    except Invalid as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    order = topological_order(spec)
    assert sorted(order) == sorted(node.name for node in spec.nodes)
