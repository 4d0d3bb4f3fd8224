"""Workflows: tasks of the task service combined into one process that runs them in sequence
or in parallel (:mod:`lakeport.workflows.definition`: the graph as users write it)."""

from lakeport.workflows.definition import (
    FileLink,
    Node,
    WorkflowSpec,
    from_edges,
    parse_workflow,
    topological_order,
)

__all__ = ["FileLink", "Node", "WorkflowSpec", "from_edges", "parse_workflow",
           "topological_order"]
