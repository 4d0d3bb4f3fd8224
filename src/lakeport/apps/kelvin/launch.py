"""Running a vendor-SDK app under ``lakeport app run``: the bridge beside the app's process.

The bridge runs its own event loop in a thread; the app runs as a child process (with the
interpreter of its own environment) that finds the stream through ``KELVIN_STREAM_IP`` and
``KELVIN_STREAM_PORT``. SIGTERM / Ctrl-C reach the app first; once it exited, the bridge
stops (acking what its delivery mode allows) and the app's exit code is returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeport.apps.kelvin.bridge import DeliveryOptions, KelvinBridge
from lakeport.apps.kelvin.runtime import RuntimeManifest, load_deployment
from lakeport.errors import Invalid

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest

VENDOR_MODULE = "kelvin"
EXPORTER_ACK_AFTER = 30.0  # seconds an exporter must run after receiving a message


def uses_vendor_sdk(folder: str | Path) -> bool:
    """Whether the app's ``.py`` files import the vendor SDK (``import kelvin`` / ``from
    kelvin ...``)."""
    from lakeport.apps.environment import imported_modules

    return VENDOR_MODULE in imported_modules(folder)


class BridgeThread:
    """A :class:`KelvinBridge` on its own event loop in a background thread."""

    def __init__(self, runtime: RuntimeManifest, *, url: str | None,
                 delivery: DeliveryOptions) -> None:
        self.runtime = runtime
        self.url = url
        self.delivery = delivery
        self._ready: concurrent.futures.Future[tuple[str, int]] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="kelvin stream", daemon=True)

    def start(self, timeout: float = 120.0) -> tuple[str, int]:
        """Start the bridge; return the address the app connects to (its errors re-raised)."""
        self._thread.start()
        return self._ready.result(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            bridge = KelvinBridge(self.runtime, url=self.url, delivery=self.delivery)
            address = await bridge.start()
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(address)
        try:
            await self._stop.wait()
        finally:
            await bridge.stop()


def run_with_bridge(runtime: RuntimeManifest, env: Mapping[str, str], *, url: str | None,
                    delivery: DeliveryOptions, python: str | Path | None = None,
                    on_progress: Callable[[str], None] | None = None) -> int:
    """Start the bridge, run the app's process against it, stop the bridge; the app's exit
    code."""
    from lakeport.apps.runner import run_app_process

    bridge = BridgeThread(runtime, url=url, delivery=delivery)
    host, port = bridge.start()
    if on_progress is not None:
        assets = ", ".join(a.name for a in runtime.assets[:5])
        more = f" (+{len(runtime.assets) - 5} more)" if len(runtime.assets) > 5 else ""
        on_progress(f"kelvin stream for {runtime.manifest.name} on {host}:{port}, assets "
                    f"{assets}{more}")
    try:
        child_env = {**env, "KELVIN_STREAM_IP": host, "KELVIN_STREAM_PORT": str(port)}
        return run_app_process(runtime.manifest.folder, child_env, python=python)
    finally:
        bridge.stop()


def prepare(manifest: Manifest, configuration: dict[str, Any], *, assets: list[str],
            deployment: Path | None, ack_after: float | None,
            max_in_flight: int = 10_000) -> tuple[RuntimeManifest, DeliveryOptions]:
    """The runtime manifest and delivery mode of ``lakeport app run`` for a Kelvin app.

    ``ack_after`` None: exporters wait :data:`EXPORTER_ACK_AFTER` seconds, others ack a
    message once written to the app.
    """
    requirements = manifest.folder / "requirements.txt"
    if not requirements.is_file() and importlib.util.find_spec(VENDOR_MODULE) is None:
        raise Invalid(f"{requirements}: missing: a Kelvin app lists the SDK it needs there "
                      "(kelvin-python-sdk==0.5.0)")
    loaded = load_deployment(deployment) if deployment is not None else None
    runtime = RuntimeManifest.build(manifest, configuration, asset_names=assets,
                                    deployment=loaded)
    if ack_after is None:
        ack_after = EXPORTER_ACK_AFTER if manifest.type == "exporter" else 0.0
    if max_in_flight < 1:
        raise Invalid(f"bad --max-in-flight {max_in_flight}: use 1 or more")
    return runtime, DeliveryOptions(ack_after=ack_after, max_in_flight=max_in_flight)
