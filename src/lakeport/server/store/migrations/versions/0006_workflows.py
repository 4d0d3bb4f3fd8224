"""The workflow service: workflows, versions, triggers, instances, nodes and events; task
copies made for an instance, and linked files named in in/ (``target``, unique per task).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("instance_id", sa.Integer, nullable=True))
    op.add_column("task_links", sa.Column("target", sa.String(1024), nullable=True))
    op.execute("UPDATE task_links SET target = file_name")
    with op.batch_alter_table("task_links") as batch:
        batch.alter_column("target", existing_type=sa.String(1024), nullable=False)
        batch.drop_constraint("uq_task_links_file", type_="unique")
        batch.create_unique_constraint("uq_task_links_target", ["task_id", "target"])
    op.create_table(
        "workflows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "workflow_versions",
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "workflow_triggers",
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("next_fire_ms", sa.BigInteger, nullable=True),
        sa.Column("fired_until_ms", sa.BigInteger, nullable=True),
        sa.Column("fired", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cursor", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "workflow_instances",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("trigger", sa.String(8), nullable=False),
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
    op.create_index("ix_workflow_instances_state", "workflow_instances",
                    ["workflow_id", "state", "id"])
    op.create_table(
        "workflow_nodes",
        sa.Column("instance_id", sa.Integer,
                  sa.ForeignKey("workflow_instances.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("base_task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("base_version", sa.Integer, nullable=False),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=True),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_workflow_nodes_run", "workflow_nodes", ["run_id"])
    op.create_index("ix_workflow_nodes_base", "workflow_nodes", ["base_task_id", "state"])
    op.create_table(
        "workflow_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance_id", sa.Integer,
                  sa.ForeignKey("workflow_instances.id", ondelete="CASCADE"), nullable=False),
        sa.Column("node", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_workflow_events_instance", "workflow_events", ["instance_id", "id"])


def downgrade() -> None:
    for table in ("workflow_events", "workflow_nodes", "workflow_instances",
                  "workflow_triggers", "workflow_versions", "workflows"):
        op.drop_table(table)
    with op.batch_alter_table("task_links") as batch:
        batch.drop_constraint("uq_task_links_target", type_="unique")
        batch.create_unique_constraint("uq_task_links_file", ["task_id", "file_name"])
        batch.drop_column("target")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("instance_id")
