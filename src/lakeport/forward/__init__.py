"""Forwarding: a durable consumer on an edge topic producing to a central topic, exactly once.

>>> config = ForwardConfig(from_topic="raw-sensor-data", to_url="http://central:8400?api_key=...")
>>> await Forwarder(config, edge_engine).run(stop_event)
"""

from lakeport.forward.config import SITE_HEADER, ForwardConfig
from lakeport.forward.forwarder import Forwarder, read_status
from lakeport.forward.rate import TokenBucket

__all__ = ["SITE_HEADER", "ForwardConfig", "Forwarder", "TokenBucket", "read_status"]
