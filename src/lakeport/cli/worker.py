"""``lakeport worker``: run task runs claimed from a lakeport server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from lakeport.cli.common import run, stderr, stop_on_signals
from lakeport.cli.remote import ApiKeyOption, ServerOption


def worker(
    url: ServerOption = None,
    api_key: ApiKeyOption = None,
    runtimes: Annotated[str | None, typer.Option(
        "--runtimes", show_default=False,
        help="Comma-separated runtimes to offer (py, js, java, c, cpp, sh, spark, "
        "component); default: every runtime whose tools are installed here.")] = None,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, max=1024, help="Runs at once at most.")] = 4,
    name: Annotated[str | None, typer.Option(
        "--name", show_default=False,
        help="How the server shows this worker (default: host-pid).")] = None,
    folder: Annotated[Path | None, typer.Option(
        "--folder", show_default=False,
        help="Where runs are unpacked and builds cached (default: $LAKEPORT_HOME/worker).")
    ] = None,
) -> None:
    """Claim task runs from a lakeport server and run them, until Ctrl-C.

    Needs only the server's URL and a worker key, so it runs on any machine:

      lakeport keys create --user w1 --worker   (on the server's machine)

      lakeport worker --url http://server:8400 --api-key lpk_... --concurrency 4

    Ctrl-C stops claiming and lets running runs finish; a second Ctrl-C stops now.

    lakeport serve starts one local worker itself (serve --workers 0 for none).
    """
    from lakeport.tasks.worker import Worker, WorkerConfig

    config = WorkerConfig(url=url, api_key=api_key, concurrency=concurrency, folder=folder,
                          runtimes=[r.strip() for r in runtimes.split(",") if r.strip()]
                          if runtimes else None)
    if name:
        config.name = name

    async def serve() -> None:
        worker = Worker(config)
        stderr.print(f"worker {config.name}: {', '.join(worker.runtimes)}; "
                     f"{concurrency} at once", markup=False)
        with stop_on_signals() as stop:
            watcher = asyncio.ensure_future(stop.wait())
            watcher.add_done_callback(lambda _: worker.stop())
            try:
                await worker.run()
            finally:
                watcher.cancel()

    run(serve())


__all__ = ["worker"]
