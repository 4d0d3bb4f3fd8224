"""Workflow files (``lakeport workflows apply flow.yaml``): YAML or JSON, read and checked here so
that a bad file fails before any request, with one line naming the file, the line and the field.

>>> definition = load_workflow_file("flow.yaml")   # a dict, as the server takes it
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lakeport.errors import Invalid
from lakeport.tasks.spec import one_line
from lakeport.workflows.definition import WorkflowSpec, check_graph, from_edges
from lakeport.yamlfile import line_of, load_mapping_file

EDGE_FIELDS = ("name", "project", "edges", "tasks", "version")
"""The fields of the seed's form: edges between tasks of one project."""


def load_workflow_file(path: str | Path) -> dict[str, Any]:
    """The definition in a ``.yaml``/``.yml`` (or ``.json``) file, checked as the server
    checks it (:func:`check_definition`; the workflow's name is the file's ``name``). Invalid,
    one line naming the file (and the line where it can), for a file that cannot be read, is
    not YAML or JSON, gives a key twice, or is not a valid workflow."""
    data, nodes = load_mapping_file(path, "workflow", "name, project and nodes")
    check_definition(data, str(path), nodes)
    return data


def check_definition(data: Mapping[str, Any], label: str | None = None,
                     nodes: yaml.Node | None = None) -> WorkflowSpec:
    """The checked spec of a definition with its ``name``: the YAML form (``nodes``) or the
    seed's (``edges`` between tasks of ``project``, ``tasks`` for nodes without an edge).
    Invalid in one line, starting with ``label`` (and the line in the YAML ``nodes`` tree
    when given)."""
    prefix = f"{label}: " if label else ""
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid(f"{prefix}the workflow has no name (add name: WORKFLOW-NAME)")
    if "edges" in data:
        return _edges(data, name, prefix)
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]["loc"] if exc.errors() else ()
        line = line_of(nodes, tuple(first))
        where = f"{label} line {line}: " if label and line is not None else prefix
        raise Invalid(where + one_line(exc, "workflow")) from None
    try:
        check_graph(spec)
    except Invalid as exc:
        raise Invalid(f"{prefix}{exc}") from None
    return spec


def _edges(data: Mapping[str, Any], name: str, prefix: str) -> WorkflowSpec:
    extra = sorted(set(data) - set(EDGE_FIELDS))
    if extra:
        raise Invalid(f"{prefix}bad workflow: {extra[0]!r} is not a field of the edges form "
                      f"({', '.join(EDGE_FIELDS)})")
    edges = data.get("edges")
    if not isinstance(edges, list | tuple) or not all(
            isinstance(edge, list | tuple) and len(edge) == 2
            and all(isinstance(end, str) for end in edge) for edge in edges):
        raise Invalid(f"{prefix}bad workflow: edges must be a list of [task, task] pairs")
    project, tasks, version = data.get("project"), data.get("tasks") or [], data.get("version")
    if not isinstance(project, str) or not isinstance(tasks, list | tuple) \
            or not all(isinstance(task, str) for task in tasks):
        raise Invalid(f"{prefix}bad workflow: the edges form needs project (and tasks, a list "
                      "of task names)")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise Invalid(f"{prefix}bad workflow: version must be a whole number")
    try:
        return from_edges(name, project, [(a, b) for a, b in edges], tasks, version or 1)
    except Invalid as exc:
        raise Invalid(f"{prefix}{exc}") from None


__all__ = ["EDGE_FIELDS", "check_definition", "load_workflow_file"]
