"""The task service's tables: projects, tasks and their versions, file links, runs,
attempts, run events, log chunks and the workers seen.

Times are milliseconds since the epoch (UTC). A run made by a schedule carries its slot, and
``(task_id, slot_ms)`` is unique: a second scheduler, or a restarted one, inserting the same
slot does nothing.
"""

from __future__ import annotations

import sqlalchemy as sa

from lakeport.server.store.schema import metadata

projects = sa.Table(
    "task_projects", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
tasks = sa.Table(
    "tasks", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("task_projects.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("runtime", sa.String(16), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # TaskSpec as JSON
    sa.Column("state", sa.String(16), nullable=False),  # active | disabled (schedule ended)
    sa.Column("next_fire_ms", sa.BigInteger, nullable=True),  # at / cron: when to look again
    sa.Column("fired_until_ms", sa.BigInteger, nullable=True),  # cron window handled so far
    sa.Column("fired", sa.Integer, nullable=False, server_default="0"),  # runs made by schedule
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("instance_id", sa.Integer, nullable=True),  # a workflow instance's copy
    sa.UniqueConstraint("project_id", "name", name="uq_tasks_project_name"),
)
sa.Index("ix_tasks_next_fire", tasks.c.next_fire_ms)
versions = sa.Table(
    "task_versions", metadata,
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("executable", sa.String(1024), nullable=True),  # the executable's file name
    sa.Column("parts", sa.Text, nullable=False),  # JSON {part: {"key", "size", "sha256"}}
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
links = sa.Table(
    "task_links", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("source_project", sa.String(128), nullable=False),
    sa.Column("source_task", sa.String(128), nullable=False),
    sa.Column("file_name", sa.String(1024), nullable=False),  # in the source's out/
    sa.Column("target", sa.String(1024), nullable=False),  # its name in in/
    sa.UniqueConstraint("task_id", "target", name="uq_task_links_target"),
)
runs = sa.Table(
    "task_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("runtime", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(8), nullable=False),  # manual | at | cron
    sa.Column("slot_ms", sa.BigInteger, nullable=True),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("desired", sa.String(8), nullable=False),  # run | pause | stop
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_before_ms", sa.BigInteger, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("ended_ms", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("task_id", "slot_ms", name="uq_task_runs_slot"),
)
sa.Index("ix_task_runs_queue", runs.c.state, runs.c.runtime, runs.c.not_before_ms)
sa.Index("ix_task_runs_task", runs.c.task_id, runs.c.id)
attempts = sa.Table(
    "task_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("task_runs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(200), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("started_ms", sa.BigInteger, nullable=False),
    sa.Column("heartbeat_ms", sa.BigInteger, nullable=False),
    sa.Column("ended_ms", sa.BigInteger, nullable=True),
    sa.Column("logs_filed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("run_id", "number", name="uq_task_attempts_number"),
)
sa.Index("ix_task_attempts_live", attempts.c.state, attempts.c.heartbeat_ms)
sa.Index("ix_task_attempts_unfiled", attempts.c.logs_filed, attempts.c.state)
events = sa.Table(
    "task_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("task_runs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)
sa.Index("ix_task_events_run", events.c.run_id, events.c.id)
logs = sa.Table(
    "task_logs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("attempt_id", sa.Integer, sa.ForeignKey("task_attempts.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("stream", sa.String(8), nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
sa.Index("ix_task_logs_attempt", logs.c.attempt_id, logs.c.stream, logs.c.offset)
workers = sa.Table(
    "task_workers", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("runtimes", sa.Text, nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("seen_ms", sa.BigInteger, nullable=False),
)

__all__ = ["attempts", "events", "links", "logs", "projects", "runs", "tasks", "versions",
           "workers"]
