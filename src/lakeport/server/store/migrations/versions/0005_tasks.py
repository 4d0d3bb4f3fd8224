"""The task service: projects, tasks, versions, links, runs, attempts, events, logs and
workers; a worker role for API keys.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("worker", sa.Boolean, nullable=False,
                                     server_default=sa.false()))
    op.create_table(
        "task_projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tasks",
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
        sa.UniqueConstraint("project_id", "name", name="uq_tasks_project_name"),
    )
    op.create_index("ix_tasks_next_fire", "tasks", ["next_fire_ms"])
    op.create_table(
        "task_versions",
        sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("executable", sa.String(1024), nullable=True),  # the executable's file name
        sa.Column("parts", sa.Text, nullable=False),  # JSON {part: {"key", "size", "sha256"}}
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "task_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("source_project", sa.String(128), nullable=False),
        sa.Column("source_task", sa.String(128), nullable=False),
        sa.Column("file_name", sa.String(1024), nullable=False),
        sa.UniqueConstraint("task_id", "file_name", name="uq_task_links_file"),
    )
    op.create_table(
        "task_runs",
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
    op.create_index("ix_task_runs_queue", "task_runs", ["state", "runtime", "not_before_ms"])
    op.create_index("ix_task_runs_task", "task_runs", ["task_id", "id"])
    op.create_table(
        "task_attempts",
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
    op.create_index("ix_task_attempts_live", "task_attempts", ["state", "heartbeat_ms"])
    op.create_index("ix_task_attempts_unfiled", "task_attempts", ["logs_filed", "state"])
    op.create_table(
        "task_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("task_runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_task_events_run", "task_events", ["run_id", "id"])
    op.create_table(
        "task_logs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey("task_attempts.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_task_logs_attempt", "task_logs", ["attempt_id", "stream", "offset"])
    op.create_table(
        "task_workers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("runtimes", sa.Text, nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("seen_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("task_workers", "task_logs", "task_events", "task_attempts", "task_runs",
                  "task_links", "task_versions", "tasks", "task_projects"):
        op.drop_table(table)
    op.drop_column("users", "worker")
