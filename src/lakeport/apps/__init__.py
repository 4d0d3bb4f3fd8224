"""Apps: programs described by an ``app.yaml`` that read and write lakeport topics.

With handlers::

    from lakeport.apps import App, Number

    app = App()  # reads app.yaml and what ``lakeport app run`` sets

    @app.stream(inputs=["temperature"])
    async def convert(msg):
        await app.publish(Number(asset=msg.asset, datastream="temperature_f",
                                 value=msg.value * 9 / 5 + 32))

    asyncio.run(app.run())

Or as a loop::

    await app.connect()
    async for msg in app.stream_filter(filters.is_asset_data_message):
        ...  # acked when the loop moves on to the next message
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeport.apps import filters
    from lakeport.apps.app import App
    from lakeport.apps.configuration import send_configuration
    from lakeport.apps.dispatch import MessageStream
    from lakeport.apps.filters import Filter
    from lakeport.apps.messages import (
        ASSET_DATA,
        CONTROL_CHANGES,
        DATA_TAGS,
        RECOMMENDATIONS,
        AppMessage,
        Boolean,
        ControlChange,
        DataMessage,
        DataTag,
        Number,
        Object,
        Recommendation,
        String,
        config_topic,
        dead_letter_topic,
        parse_message,
        topic_name,
    )
    from lakeport.apps.timers import next_cron_fire

__all__ = [
    "ASSET_DATA",
    "CONTROL_CHANGES",
    "DATA_TAGS",
    "RECOMMENDATIONS",
    "App",
    "AppMessage",
    "Boolean",
    "ControlChange",
    "DataMessage",
    "DataTag",
    "Filter",
    "MessageStream",
    "Number",
    "Object",
    "Recommendation",
    "String",
    "config_topic",
    "dead_letter_topic",
    "filters",
    "next_cron_fire",
    "parse_message",
    "send_configuration",
    "topic_name",
]


_MESSAGES = ("ASSET_DATA", "CONTROL_CHANGES", "DATA_TAGS", "RECOMMENDATIONS", "AppMessage",
             "Boolean", "ControlChange", "DataMessage", "DataTag", "Number", "Object",
             "Recommendation", "String", "config_topic", "dead_letter_topic", "parse_message",
             "topic_name")
_HOMES = {"App": "app", "send_configuration": "configuration", "MessageStream": "dispatch",
          "Filter": "filters", "next_cron_fire": "timers",
          **{name: "messages" for name in _MESSAGES}}


def __getattr__(name: str) -> Any:
    """The SDK's names are imported on first use, so code that needs one module of this
    package (an app's environment, its manifest) does not load the stream engines."""
    if name == "filters":
        value: Any = importlib.import_module("lakeport.apps.filters")
    elif name in _HOMES:
        value = getattr(importlib.import_module(f"lakeport.apps.{_HOMES[name]}"), name)
    else:
        raise AttributeError(f"module 'lakeport.apps' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
