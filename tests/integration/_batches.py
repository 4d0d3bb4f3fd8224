"""Batches of sensor rows for sink tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from lakeport.export.sinks import Batch
from lakeport.readings import ROW_SCHEMA

BASE = datetime(2026, 5, 1, 23, 59, 56, tzinfo=UTC)


def make_batch(first: int, last: int, topic: str = "asset-data",
               step: timedelta = timedelta(seconds=1)) -> Batch:
    """Rows ``first..last`` at ``BASE + seqno * step``: seqnos 1-3 fall on May 1, 4- on May 2."""
    seqnos = list(range(first, last + 1))
    table = pa.table(
        {
            "time": [BASE + s * step for s in seqnos],
            "asset": [f"pump-{s % 3}" for s in seqnos],
            "datastream": ["temperature"] * len(seqnos),
            "value_number": [float(s) for s in seqnos],
            "value_string": [None] * len(seqnos),
            "value_bool": [None] * len(seqnos),
            "value_object": [None] * len(seqnos),
            "unit": ["C"] * len(seqnos),
            "seqno": seqnos,
            "producer": ["sim"] * len(seqnos),
        },
        schema=ROW_SCHEMA,
    )
    return Batch(topic, first, last, table)
