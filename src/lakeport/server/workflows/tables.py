"""The workflow service's tables: workflows and their versions, instances, their nodes and
their transitions.

A node runs a copy of its task made for the instance (``tasks.instance_id`` names the
instance; the copy's runs are the node's runs). ``(workflow_id, trigger_key)`` is unique: a
cron slot, a file that landed or a topic message starts one instance however often it is
seen, across restarts.
"""

from __future__ import annotations

import sqlalchemy as sa

from lakeport.server.store.schema import metadata

workflows = sa.Table(
    "workflows", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # the newest; instances run it
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
versions = sa.Table(
    "workflow_versions", metadata,
    sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),  # WorkflowSpec as JSON
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
triggers = sa.Table(
    "workflow_triggers", metadata,
    sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),  # its place in the spec's triggers
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # cron | files | topic
    sa.Column("state", sa.String(8), nullable=False),  # active | done
    sa.Column("next_fire_ms", sa.BigInteger, nullable=True),  # cron: when to look again
    sa.Column("fired_until_ms", sa.BigInteger, nullable=True),  # cron window handled so far
    sa.Column("fired", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cursor", sa.Text, nullable=False, server_default=""),  # files / topic: seen
)
instances = sa.Table(
    "workflow_instances", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("trigger", sa.String(8), nullable=False),  # manual | cron | files | topic
    sa.Column("trigger_key", sa.String(1200), nullable=True),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("recoveries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("started_ms", sa.BigInteger, nullable=True),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("ended_ms", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("workflow_id", "trigger_key", name="uq_workflow_instances_trigger"),
    sqlite_autoincrement=True,  # an id is never used again: it names task copies
)
sa.Index("ix_workflow_instances_state", instances.c.workflow_id, instances.c.state,
         instances.c.id)
nodes = sa.Table(
    "workflow_nodes", metadata,
    sa.Column("instance_id", sa.Integer,
              sa.ForeignKey("workflow_instances.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("base_task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("base_version", sa.Integer, nullable=False),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"),
              nullable=False),  # the instance's copy
    sa.Column("state", sa.String(16), nullable=False),  # pending | queued | ended states
    sa.Column("run_id", sa.Integer, nullable=True),  # its current (latest) run
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
sa.Index("ix_workflow_nodes_run", nodes.c.run_id)
sa.Index("ix_workflow_nodes_base", nodes.c.base_task_id, nodes.c.state)
events = sa.Table(
    "workflow_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("instance_id", sa.Integer,
              sa.ForeignKey("workflow_instances.id", ondelete="CASCADE"), nullable=False),
    sa.Column("node", sa.String(128), nullable=True),  # None: the instance itself
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)
sa.Index("ix_workflow_events_instance", events.c.instance_id, events.c.id)

__all__ = ["events", "instances", "nodes", "triggers", "versions", "workflows"]
