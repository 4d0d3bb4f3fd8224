"""What a workflow is, as users write it: tasks of the task service as the nodes of a graph.

The seed's form is a list of edges between tasks (``[("t1", "t2")]``, with an implicit start
and end: :func:`from_edges`); the YAML form (``lakeport workflows apply flow.yaml``) names each
node's task, the nodes it runs after, its parameters, retries and timeout, and which output
files of upstream nodes it takes as inputs::

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

:func:`parse_workflow` checks a definition before anything is stored: a cycle, a node that runs
after one that does not exist, a file taken from a node that does not run before it, and a
parameter the workflow does not declare are each one line naming the nodes. Whether the tasks
exist and the owner may run them is the server's to check.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from lakeport.errors import Invalid
from lakeport.tasks.schedule import Cron
from lakeport.tasks.spec import NAME_RE, Retries, name_problem, one_line, relative_path_problem

_PARAMETER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
"""``{{ name }}``: a workflow parameter inside a node's parameter value."""


def _named(value: str, what: str) -> str:
    problem = name_problem(value, what)
    if problem is not None:
        raise ValueError(problem)
    return value


class FileLink(BaseModel):
    """An output file of an upstream node (``out/<file>`` of its run) that a node gets in its
    ``in/`` folder (as ``as`` when given, else under the same name)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: str = Field(alias="from", description="the upstream node")
    file: str = Field(min_length=1, max_length=1024)
    target: str | None = Field(None, alias="as", max_length=1024)

    @field_validator("file", "target")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (problem := relative_path_problem(value)) is not None:
            raise ValueError(problem)
        return value


class Node(BaseModel):
    """One step: a task (``task`` or ``project/task``) run once per instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    task: str
    after: list[str] = Field(default_factory=list, max_length=1000)
    parameters: dict[str, str] = Field(default_factory=dict)
    retries: Retries | None = None
    timeout: float | None = Field(None, gt=0, le=30 * 86_400, description="seconds")
    inputs: list[FileLink] = Field(default_factory=list, max_length=1000)
    concurrency: int | None = Field(None, ge=1, le=10_000, description=(
        "runs of this node's task on their way at once, over every instance of the workflow"))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _named(value, "node")

    @field_validator("task")
    @classmethod
    def _task(cls, value: str) -> str:
        parts = value.split("/")
        if len(parts) > 2 or not all(NAME_RE.fullmatch(part) for part in parts):
            raise ValueError(f"bad task {value!r}: use TASK or PROJECT/TASK")
        return value

    def task_ref(self, project: str) -> tuple[str, str]:
        """(project, task) of the node's task; ``project`` when the node names none."""
        found, _, task = self.task.rpartition("/")
        return found or project, task


class CronTrigger(Cron):
    """An instance per slot of a cron expression (one per slot, whatever restarts; the
    task service's rules: DST-safe, ``catchup``, ``limit``). Gives the parameter ``slot``
    (the slot's time, ISO 8601)."""

    parameters: dict[str, str] = Field(default_factory=dict)

    def schedule(self) -> Cron:
        return Cron(expression=self.expression, timezone=self.timezone, limit=self.limit,
                    catchup=self.catchup)


class FilesTrigger(BaseModel):
    """An instance per file that lands in the data lake under ``path`` (a glob on lake
    paths: ``exports/plant/**/*.parquet``), once per file. Gives the parameter ``path``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["files"] = "files"
    path: str = Field(min_length=1, max_length=1024)
    parameters: dict[str, str] = Field(default_factory=dict)


class TopicTrigger(BaseModel):
    """An instance per message of ``topic`` whose fields equal those of ``where`` (all of
    them; a nested field as ``payload.site``), once per message. Gives the parameters
    ``seqno`` and ``message`` (the message as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["topic"] = "topic"
    topic: str = Field(min_length=1, max_length=255)
    where: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, str] = Field(default_factory=dict)


Trigger = Annotated[CronTrigger | FilesTrigger | TopicTrigger, Field(discriminator="kind")]
GIVEN = {"cron": ("slot",), "files": ("path",), "topic": ("seqno", "message")}
"""The parameters each kind of trigger gives an instance."""


class WorkflowSpec(BaseModel):
    """A workflow definition: its name and version (the seed's ``processName`` and
    ``processVersion``), the project its nodes' tasks are in unless they name one, the
    parameters an instance takes, and the nodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(1, ge=1)
    project: str
    description: str = Field("", max_length=10_000)
    parameters: list[str] = Field(default_factory=list, max_length=100)
    max_active_instances: int = Field(1, ge=1, le=10_000)
    nodes: list[Node] = Field(min_length=1, max_length=10_000)
    triggers: list[Trigger] = Field(default_factory=list, max_length=100)

    @field_validator("name", "project")
    @classmethod
    def _names(cls, value: str, info: ValidationInfo) -> str:
        return _named(value, "workflow" if info.field_name == "name" else "project")

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def from_edges(name: str, project: str, edges: Iterable[tuple[str, str]],
               tasks: Iterable[str] = (), version: int = 1) -> WorkflowSpec:
    """The seed's form: edges between tasks of ``project`` (each task a node of its name);
    ``tasks`` adds nodes that have no edge. Checked as :func:`parse_workflow` does."""
    after: dict[str, list[str]] = {task: [] for task in tasks}
    for before, then in edges:
        after.setdefault(before, [])
        after.setdefault(then, []).append(before)
    return parse_workflow({"name": name, "version": version, "project": project,
                           "nodes": [{"name": node, "task": node, "after": list(upstream)}
                                     for node, upstream in after.items()]})


def parse_workflow(data: Any) -> WorkflowSpec:
    """A checked :class:`WorkflowSpec` from a mapping (a parsed YAML file or a request body);
    Invalid with one line naming what is wrong."""
    if not isinstance(data, Mapping):
        raise Invalid("bad workflow: expected a mapping with name, project and nodes")
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise Invalid(one_line(exc, "workflow")) from None
    check_graph(spec)
    return spec


def check_graph(spec: WorkflowSpec) -> None:
    """Invalid, naming the nodes, for a repeated node, an edge from a node that does not
    exist, a cycle, a file taken from a node that does not run before it, or a parameter
    the workflow does not declare."""
    names: set[str] = set()
    for node in spec.nodes:
        if node.name in names:
            raise Invalid(f"workflow {spec.name!r}: two nodes are called {node.name!r}")
        names.add(node.name)
    for node in spec.nodes:
        for before in node.after:
            if before not in names:
                raise Invalid(f"workflow {spec.name!r}: node {node.name!r} runs after "
                              f"{before!r}, which is not a node")
            if before == node.name:
                raise Invalid(f"workflow {spec.name!r}: node {node.name!r} runs after itself")
    topological_order(spec)
    after = {node.name: node.after for node in spec.nodes}
    for node in spec.nodes:
        for link in node.inputs:
            if not _runs_before(after, link.source, node.name):
                raise Invalid(f"workflow {spec.name!r}: node {node.name!r} takes "
                              f"{link.file!r} from {link.source!r}, which does not run before "
                              "it (add it to the node's after, or to one of theirs)")
        for key, value in node.parameters.items():
            for used in _PARAMETER.findall(value):
                if used not in spec.parameters:
                    raise Invalid(f"workflow {spec.name!r}: node {node.name!r} parameter "
                                  f"{key!r} uses {{{{ {used} }}}}, which the workflow does not "
                                  f"declare (parameters: {', '.join(spec.parameters) or 'none'})")
    for number, trigger in enumerate(spec.triggers, 1):
        given = set(GIVEN[trigger.kind]) | set(trigger.parameters)
        for name in trigger.parameters:
            if name not in spec.parameters:
                raise Invalid(f"workflow {spec.name!r}: trigger {number} ({trigger.kind}) sets "
                              f"parameter {name!r}, which the workflow does not declare")
        missing = [name for name in spec.parameters if name not in given]
        if missing:
            raise Invalid(f"workflow {spec.name!r}: trigger {number} ({trigger.kind}) gives no "
                          f"value for parameter {missing[0]!r} (set it in the trigger's "
                          "parameters)")


def topological_order(spec: WorkflowSpec) -> list[str]:
    """The node names, each after every node it runs after; Invalid naming a cycle."""
    waiting = {node.name: len(set(node.after)) for node in spec.nodes}
    then: dict[str, list[str]] = {node.name: [] for node in spec.nodes}
    for node in spec.nodes:
        for before in set(node.after):
            then[before].append(node.name)
    ready = deque(node.name for node in spec.nodes if not node.after)
    order: list[str] = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for follower in then[name]:
            waiting[follower] -= 1
            if not waiting[follower]:
                ready.append(follower)
    if len(order) < len(spec.nodes):
        raise Invalid(f"workflow {spec.name!r}: cycle {' → '.join(_cycle(spec, set(order)))}")
    return order


def _runs_before(after: Mapping[str, list[str]], source: str, name: str) -> bool:
    """Whether ``source`` is upstream of ``name`` (a walk up from ``name``: most links name a
    node it runs right after)."""
    seen: set[str] = set()
    todo = list(after[name])
    while todo:
        before = todo.pop()
        if before == source:
            return True
        if before not in seen:
            seen.add(before)
            todo.extend(after[before])
    return False


def _cycle(spec: WorkflowSpec, done: set[str]) -> list[str]:
    """One cycle among the nodes not in ``done``, as names from a node back to itself."""
    after = {node.name: [b for b in node.after if b not in done]
             for node in spec.nodes if node.name not in done}
    path: list[str] = []
    name = next(iter(after))
    while name not in path:
        path.append(name)
        name = after[name][0]  # every node left waits for another one left
    return [*path[path.index(name):], name][::-1]


__all__ = ["GIVEN", "CronTrigger", "FileLink", "FilesTrigger", "Node", "TopicTrigger", "Trigger",
           "WorkflowSpec", "check_graph", "from_edges", "parse_workflow", "topological_order"]
