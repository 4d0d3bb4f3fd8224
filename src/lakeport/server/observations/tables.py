"""Tables of the observation service.

``datastreams.feature_id`` is 0 when a datastream has no feature of interest: a UNIQUE
constraint treats NULLs as distinct (SQLite, and PostgreSQL before 15), so a NULL there would
let the same (sensor, property, no feature) be created twice under concurrency; with a 0
sentinel one plain unique constraint and ``ON CONFLICT DO NOTHING`` work on both stores. The
column therefore has no foreign key; deleting a feature checks it instead.

``observations`` has no primary key and no foreign key (nothing to check per row on insert):
rows are only written through datastreams the service resolved, and read through the
(datastream_id, time) index. ``count``/``first_ms``/``last_ms`` of a datastream are updated
once per inserted batch (no per-row triggers).
"""

from __future__ import annotations

import sqlalchemy as sa

from lakeport.server.store.schema import metadata

NO_FEATURE = 0

features = sa.Table(
    "obs_features", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("geometry", sa.Text),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("obs_features.id"), index=True),
    sa.Column("properties", sa.Text, nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
sensors = sa.Table(
    "obs_sensors", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("components", sa.Text, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
properties = sa.Table(
    "obs_properties", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("unit", sa.String(100), nullable=False),
    sa.Column("data_type", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
datastreams = sa.Table(
    "obs_datastreams", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sensor_id", sa.Integer, sa.ForeignKey("obs_sensors.id"), nullable=False),
    sa.Column("property_id", sa.Integer, sa.ForeignKey("obs_properties.id"), nullable=False,
              index=True),
    sa.Column("feature_id", sa.Integer, nullable=False, index=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("first_ms", sa.BigInteger),
    sa.Column("last_ms", sa.BigInteger),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("sensor_id", "property_id", "feature_id",
                        name="uq_obs_datastreams_triple"),
)
observations = sa.Table(
    "observations", metadata,
    sa.Column("datastream_id", sa.Integer, nullable=False),
    sa.Column("time", sa.BigInteger, nullable=False),
    sa.Column("value_number", sa.Double),
    sa.Column("value_text", sa.Text),
    sa.Index("ix_observations_datastream_time", "datastream_id", "time"),
)

__all__ = ["NO_FEATURE", "datastreams", "features", "observations", "properties", "sensors"]
