"""``http(s)://host:port`` — the topics of a running lakeport server as an engine.

>>> async with open_engine("http://edge-box:8400?api_key=lpk_...") as engine:
...     async with engine.producer("p", "raw-sensor-data") as producer:
...         await producer.produce({"temp": 10})
"""

from lakeport.streams.remote.engine import RemoteEngine

__all__ = ["RemoteEngine"]
