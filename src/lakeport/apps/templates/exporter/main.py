"""Export the app's topics to the lake with lakeport's exporter runtime.

This is the runtime of ``lakeport export run`` (``lakeport.export.runtime.Exporter``), configured
by the app's configuration (schemas/configuration.json documents every option): it reads
``asset-data`` under the app's name, cuts batches of ``batch_rows`` rows, ``batch_bytes`` bytes
or ``max_delay`` seconds, writes each as Parquet to ``to`` (default: the folder ``output`` of
the app) as ``<topic>/date=YYYY-MM-DD/<topic>-<first seqno>-<last seqno>.parquet`` and acks a
batch only once the sink confirmed it, so a crash loses nothing and a retried batch overwrites
the same file. SIGTERM or Ctrl-C lands the batch in progress before the app stops.

Run it with ``lakeport app run .`` and feed it with ``lakeport app test simulator .``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from lakeport.apps import ASSET_DATA, App, topic_name
from lakeport.errors import Invalid, LakeportError
from lakeport.export.config import ExportConfig
from lakeport.export.runtime import Exporter
from lakeport.export.status import ExportStatus
from pydantic import ValidationError

logger = logging.getLogger("exporter")

DEFAULT_FOLDER = "output"
REPORT_EVERY = 10.0  # seconds between progress lines in the log (when something changed)


def sink_url(to: str, app_dir: Path) -> str:
    """``to`` as a sink URL: a URL stays as it is, a folder (relative to the app) is file://."""
    if "://" in to or to.startswith("dbfs:"):
        return to
    return (app_dir / Path(to).expanduser()).resolve().as_uri()


def export_config(configuration: dict[str, Any], app_name: str, streams_url: str,
                  app_dir: Path) -> ExportConfig:
    """The exporter's configuration: the app's options, with the app's defaults for ``topics``
    (its input ``asset-data``), ``to`` (its ``output`` folder) and ``name`` (the app's name)."""
    options = {key: value for key, value in configuration.items() if value is not None}
    topics = options.get("topics", [ASSET_DATA])
    if isinstance(topics, list):
        options["topics"] = [topic_name(t) if isinstance(t, str) else t for t in topics]
    to = options.get("to", DEFAULT_FOLDER)
    options["to"] = sink_url(to, app_dir) if isinstance(to, str) and to else to
    options.setdefault("name", app_name)
    options["streams_url"] = streams_url
    try:
        return ExportConfig(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Invalid(f"configuration.{where}: {first['msg']}") from None


def progress(status: ExportStatus) -> str:
    line = (f"{status.state}: {status.rows:,} rows in {status.files:,} files, "
            f"lag {status.lag:,}")
    if status.dead_letters:
        line += f", {status.dead_letters:,} dead letters"
    if status.state == "retrying" and status.last_error:
        line += f" (retrying: {status.last_error})"
    return line


async def report(exporter: Exporter) -> None:
    """Log the exporter's progress every ``REPORT_EVERY`` seconds while it changes."""
    last = ""
    while True:
        await asyncio.sleep(REPORT_EVERY)
        line = progress(exporter.status)
        if line != last:
            logger.info("%s", line)
            last = line


async def run(app: App, exporter: Exporter) -> ExportStatus | None:
    """Serve the app and run the exporter until the app stops (SIGTERM, SIGINT, ``app.stop()``)
    or the exporter does (``until_idle``, a terminal error).

    The app brings the health endpoints and the signal handling; the exporter starts once the
    app has reached its streams engine (retried like every app's connection) and lands the
    batch in progress when the app stops. None if the app stopped before it connected.
    """
    stop = asyncio.Event()
    connected = asyncio.Event()

    async def on_connect() -> None:
        connected.set()

    async def serve() -> None:
        try:
            await app.run()
        finally:
            stop.set()

    app.on_connect = on_connect
    serving = asyncio.create_task(serve(), name=f"app {app.name}")
    started = asyncio.create_task(connected.wait())
    reporter: asyncio.Task[None] | None = None
    try:
        await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
        if not connected.is_set():
            return None
        reporter = asyncio.create_task(report(exporter))
        return await exporter.run(stop)
    finally:
        for task in (started, reporter):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        app.stop()
        await serving


async def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = App(subscriptions=[])  # the exporter reads its topics itself, under the app's name
    app_dir = Path(os.environ.get("LAKEPORT_APP_DIR", "."))
    config = export_config(app.app_configuration, app.name, app.url, app_dir)
    exporter = Exporter(config)
    logger.info("exporter %s: %s → %s (%s); lakeport export status %s shows its progress",
                config.exporter_name, ", ".join(config.topics), exporter.sink.describe(),
                config.format, config.exporter_name)
    status = await run(app, exporter)
    if status is not None:
        print(f"received {status.rows + status.dead_letters} messages", flush=True)
        print(f"exported {status.rows} rows in {status.files} files to {status.sink}",
              flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except LakeportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
