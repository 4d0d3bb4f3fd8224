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
