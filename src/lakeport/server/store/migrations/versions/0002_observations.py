"""Sensor observations: features, sensors, observed properties, datastreams, observations.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "obs_features",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("geometry", sa.Text),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("obs_features.id")),
        sa.Column("properties", sa.Text, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_obs_features_parent_id", "obs_features", ["parent_id"])
    op.create_table(
        "obs_sensors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("components", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "obs_properties",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("unit", sa.String(100), nullable=False),
        sa.Column("data_type", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "obs_datastreams",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sensor_id", sa.Integer, sa.ForeignKey("obs_sensors.id"), nullable=False),
        sa.Column("property_id", sa.Integer, sa.ForeignKey("obs_properties.id"),
                  nullable=False),
        sa.Column("feature_id", sa.Integer, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_ms", sa.BigInteger),
        sa.Column("last_ms", sa.BigInteger),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("sensor_id", "property_id", "feature_id",
                            name="uq_obs_datastreams_triple"),
    )
    op.create_index("ix_obs_datastreams_property_id", "obs_datastreams", ["property_id"])
    op.create_index("ix_obs_datastreams_feature_id", "obs_datastreams", ["feature_id"])
    op.create_table(
        "observations",
        sa.Column("datastream_id", sa.Integer, nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("value_number", sa.Double),
        sa.Column("value_text", sa.Text),
    )
    op.create_index("ix_observations_datastream_time", "observations",
                    ["datastream_id", "time"])


def downgrade() -> None:
    op.drop_table("observations")
    op.drop_table("obs_datastreams")
    op.drop_table("obs_properties")
    op.drop_table("obs_sensors")
    op.drop_table("obs_features")
