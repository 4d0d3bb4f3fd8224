"""Workflow files: a good YAML or JSON file loads as the dict the server takes; a duplicate key,
bad YAML, an unknown field or a bad graph is one line of Invalid naming the file and, where
the YAML says it, the line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from lakeport.errors import Invalid
from lakeport.workflows.files import check_definition, load_workflow_file

GOOD = """\
name: daily-report
version: 2
project: plant
parameters: [day]
nodes:
  - name: aggregate
    task: aggregate
    parameters: {day: "{{ day }}"}
  - name: report
    task: reports/render
    after: [aggregate]
    retries: {count: 2}
    inputs:
      - {from: aggregate, file: summary.csv, as: input.csv}
triggers:
  - {kind: cron, expression: "0 6 * * *", parameters: {day: today}}
"""


def write(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problem(path: Path) -> str:
    with pytest.raises(Invalid) as caught:
        load_workflow_file(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_a_good_file_loads_as_written(tmp_path: Path) -> None:
    data = load_workflow_file(write(tmp_path, GOOD))
    assert data["name"] == "daily-report" and data["version"] == 2
    assert [node["name"] for node in data["nodes"]] == ["aggregate", "report"]
    assert data["nodes"][1]["inputs"] == [
        {"from": "aggregate", "file": "summary.csv", "as": "input.csv"}]
    spec = check_definition(data)
    assert spec.node("report").after == ["aggregate"]


def test_json_and_the_seeds_edges_form_load_too(tmp_path: Path) -> None:
    body = {"name": "seed", "project": "plant", "edges": [["t1", "t2"]]}
    data = load_workflow_file(write(tmp_path, json.dumps(body), "seed.json"))
    assert data == body
    edges = write(tmp_path, "name: seed\nproject: plant\nedges: [[t1, t2], [t2, t3]]\n",
                  "seed.yml")
    spec = check_definition(load_workflow_file(edges))
    assert [(node.name, node.after) for node in spec.nodes] == [
        ("t1", []), ("t2", ["t1"]), ("t3", ["t2"])]


def test_a_duplicate_key_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    task: aggregate\n",
                                        "    task: aggregate\n    task: other\n"))
    assert problem(path) == f"{path} line 8, column 5: duplicate key 'task'"
    twice = write(tmp_path, '{"name": "a",\n "name": "b"}', "twice.json")
    assert problem(twice) == f"{twice}: duplicate key 'name'"


def test_bad_yaml_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nproject: [plant\nnodes: []\n")
    message = problem(path)
    assert message.startswith(f"{path} line 3, column 6: ")
    bad_json = write(tmp_path, '{"name": "a",\n "project" "p"}', "bad.json")
    assert problem(bad_json) == (f"{bad_json} line 2, column 12: not valid JSON (Expecting ':' "
                                 "delimiter)")


def test_an_unknown_field_is_one_line_naming_it_and_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    retries: {count: 2}\n",
                                        "    retries: {count: 2}\n    colour: red\n"))
    assert problem(path) == (f"{path} line 13: bad workflow: nodes.1.colour: Extra inputs are "
                             "not permitted")
    top = write(tmp_path, "name: a\nproject: p\nnodez: []\n", "top.yaml")
    assert "nodez: Extra inputs are not permitted" in problem(top)
    edges = write(tmp_path, "name: a\nproject: p\nedges: []\nnodes: []\n", "edges.yaml")
    assert problem(edges) == (f"{edges}: bad workflow: 'nodes' is not a field of the edges "
                              "form (name, project, edges, tasks, version)")


def test_a_bad_graph_or_missing_name_fails_before_any_request(tmp_path: Path) -> None:
    cycle = write(tmp_path, "name: c\nproject: p\nnodes:\n"
                  "  - {name: a, task: a, after: [b]}\n  - {name: b, task: b, after: [a]}\n")
    assert problem(cycle) == f"{cycle}: workflow 'c': cycle a → b → a"
    unnamed = write(tmp_path, "project: p\nnodes: [{name: a, task: a}]\n", "unnamed.yaml")
    assert "has no name" in problem(unnamed)
    empty = write(tmp_path, "", "empty.yaml")
    assert problem(empty) == f"{empty}: is empty (a workflow needs name, project and nodes)"
    listed = write(tmp_path, "- a\n", "list.yaml")
    assert "must be a mapping" in problem(listed)
    assert problem(tmp_path / "missing.yaml") == f"{tmp_path / 'missing.yaml'}: no such file"
