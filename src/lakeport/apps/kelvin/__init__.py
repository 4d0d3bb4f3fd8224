"""The vendor's stream protocol, served to apps written with ``kelvin-python-sdk``.

``lakeport app run`` starts a :class:`KelvinBridge` for an app whose code imports ``kelvin``:
a TCP endpoint on 127.0.0.1 that sends the app its runtime manifest (:mod:`.runtime`), feeds
it the messages of its lakeport topics and writes what it publishes back to them
(:mod:`.wire` converts both ways). See docs/apps/kelvin.md.
"""

from lakeport.apps.kelvin.actions import new_action, send_action
from lakeport.apps.kelvin.bridge import DeliveryOptions, KelvinBridge
from lakeport.apps.kelvin.launch import BridgeThread, run_with_bridge, uses_vendor_sdk
from lakeport.apps.kelvin.runtime import Deployment, RuntimeManifest, load_deployment
from lakeport.apps.kelvin.wire import (
    ActionRequest,
    ActionResult,
    Unmappable,
    from_vendor,
    to_vendor,
)

__all__ = [
    "ActionRequest",
    "ActionResult",
    "BridgeThread",
    "DeliveryOptions",
    "Deployment",
    "KelvinBridge",
    "RuntimeManifest",
    "Unmappable",
    "from_vendor",
    "load_deployment",
    "new_action",
    "run_with_bridge",
    "send_action",
    "to_vendor",
    "uses_vendor_sdk",
]
