"""The rows exporters land in the lake: one typed row per sensor reading.

| column         | type                       | from the message                           |
|----------------|----------------------------|--------------------------------------------|
| time           | timestamp[us, tz=UTC]      | payload ``time`` (else the topic's time)   |
| asset          | string                     | payload ``asset``                          |
| datastream     | string                     | payload ``datastream``                     |
| value_number   | float64                    | ``value`` when a number                    |
| value_string   | string                     | ``value`` when a string                    |
| value_bool     | bool                       | ``value`` when a boolean                   |
| value_object   | string (JSON text)         | ``value`` when an object or a list         |
| unit           | string                     | payload ``unit`` (optional)                |
| seqno          | int64                      | the topic message's seqno                  |
| producer       | string                     | the topic message's producer               |

Exactly one ``value_*`` column is set per row, except for an integer beyond ±2**53
(float64 no longer holds every integer there): ``value_number`` holds the nearest
float64 and ``value_string`` the exact digits. Payloads follow the app message format
(``lakeport.apps.messages``: ``{"asset", "datastream", "value", "unit", "time", "type"}``).
"""

from __future__ import annotations

import pyarrow as pa

ROW_SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("asset", pa.string(), nullable=False),
        pa.field("datastream", pa.string(), nullable=False),
        pa.field("value_number", pa.float64()),
        pa.field("value_string", pa.string()),
        pa.field("value_bool", pa.bool_()),
        pa.field("value_object", pa.string()),
        pa.field("unit", pa.string()),
        pa.field("seqno", pa.int64(), nullable=False),
        pa.field("producer", pa.string(), nullable=False),
    ]
)
