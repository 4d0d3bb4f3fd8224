"""Durable topics: one API, several engines chosen by URL.

>>> async with open_engine("memory://") as engine:
...     async with engine.producer("p", "raw-sensor-data") as producer:
...         seqno = await producer.produce({"temp": 10})
"""

from lakeport.streams.base import Consumer, ConsumerSpec, EndOfTopic, Engine, Producer
from lakeport.streams.registry import known_schemes, open_engine, register_engine
from lakeport.streams.types import (
    ConsumerInfo,
    EndMarker,
    Filters,
    Format,
    Message,
    Mode,
    Persistence,
    Position,
    TopicInfo,
    TopicOptions,
    parse_duration,
    parse_size,
)

__all__ = [
    "Consumer",
    "ConsumerInfo",
    "ConsumerSpec",
    "EndMarker",
    "EndOfTopic",
    "Engine",
    "Filters",
    "Format",
    "Message",
    "Mode",
    "Persistence",
    "Position",
    "Producer",
    "TopicInfo",
    "TopicOptions",
    "known_schemes",
    "open_engine",
    "parse_duration",
    "parse_size",
    "register_engine",
]
