"""``lakeport export ...``: run an exporter (topics → Parquet/CSV/JSON Lines → a sink) and
show its status."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakeport.cli.common import (
    UrlOption,
    duration,
    human_bytes,
    json_line,
    parse_option,
    run,
    stderr,
    stdout,
    stop_on_signals,
    write_out,
)
from lakeport.errors import Invalid
from lakeport.units import parse_size

if TYPE_CHECKING:
    from lakeport.export.config import ExportConfig
    from lakeport.export.status import ExportStatus

app = typer.Typer(
    help="Land topics in the lake: Parquet (or CSV, JSON Lines) batches in a local folder, "
    "S3, Azure Data Lake, a Databricks volume or a Delta table.\n\n"
    "Example: lakeport export run --topic transformed-data --to file:///srv/lake",
    no_args_is_help=True,
)


def _config(**fields: Any) -> ExportConfig:
    from pydantic import ValidationError

    from lakeport.export.config import ExportConfig

    try:
        return ExportConfig(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "configuration"
        raise Invalid(f"bad export option {where}: {first['msg']}") from None


def status_line(status: ExportStatus, started: float) -> str:
    elapsed = max(time.monotonic() - started, 1e-9)
    line = (f"{status.name} [{status.state}] {status.rows:,} rows "
            f"({status.rows / elapsed:,.0f}/s), {human_bytes(status.bytes)} in, "
            f"{status.files:,} files, lag {status.lag:,}")
    if status.dead_letters:
        line += f", {status.dead_letters:,} dead letters"
    if status.last_error and status.state == "retrying":
        line += f" — retrying: {status.last_error}"
    return line


@app.command("run")
def run_(
    to: Annotated[str, typer.Option(
        "--to", help="Sink URL: file:///path, s3://bucket/prefix, abfs://container@account/"
        "prefix, dbfs:/Volumes/catalog/schema/volume/path, delta+file:///path, "
        "table://in.c-edge.readings (a storage table).",
        show_default=False)],
    topic: Annotated[list[str], typer.Option(
        "--topic", help="Topic to export (repeat for more).", show_default=False)],
    name: Annotated[str | None, typer.Option(
        help="Exporter name = its consumer name (default export-<first topic>).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet, csv or jsonl.")] = "parquet",
    batch_rows: Annotated[int, typer.Option(help="Rows per batch at most.")] = 100_000,
    batch_bytes: Annotated[str, typer.Option(help="Payload bytes per batch at most.")] = "128MB",
    max_delay: Annotated[str, typer.Option(
        help="How long a partial batch waits before it is written.")] = "60s",
    partition_by_asset: Annotated[bool, typer.Option(
        "--partition-by-asset", help="Add asset=... below date=... partitions.")] = False,
    until_idle: Annotated[str | None, typer.Option(
        help="Exit once the topics are drained and idle this long (e.g. 5s).")] = None,
    url: UrlOption = None,
) -> None:
    """Export topics until SIGTERM or Ctrl-C (the current batch is flushed first).

    Rows land as <to>/<topic>/date=YYYY-MM-DD/<topic>-<first seqno>-<last seqno>.parquet;
    a batch is acked only once the sink confirmed it, so a restart never loses or
    duplicates rows.

    Example: lakeport export run --topic transformed-data --to file:///srv/lake --max-delay 10s
    """
    from rich.live import Live
    from rich.text import Text

    from lakeport.export.runtime import Exporter

    config = _config(
        topics=topic, to=to, name=name, format=fmt, batch_rows=batch_rows,
        batch_bytes=parse_option(parse_size, batch_bytes, "--batch-bytes"),
        max_delay=duration(max_delay, "--max-delay"), partition_by_asset=partition_by_asset,
        until_idle=duration(until_idle, "--until-idle"), streams_url=url,
    )
    exporter = Exporter(config)
    started = time.monotonic()

    async def go() -> ExportStatus:
        with stop_on_signals() as stop:
            if not stderr.is_terminal:
                return await exporter.run(stop)
            with Live(Text(status_line(exporter.status, started)), console=stderr,
                      refresh_per_second=2, transient=True) as live:
                task = asyncio.create_task(exporter.run(stop))
                while not task.done():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(task), 1.0)
                    live.update(Text(status_line(exporter.status, started)))
                return task.result()

    stderr.print(f"exporter [bold]{config.exporter_name}[/]: {', '.join(config.topics)} → "
                 f"{exporter.sink.describe()} ({config.format})")
    status = run(go())
    stderr.print(f"stopped: {status_line(status, started)}", markup=False, soft_wrap=True)


@app.command()
def status(
    name: Annotated[str, typer.Argument(help="Exporter name.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show an exporter's rows and bytes exported, files written, lag and last error."""
    from lakeport.export.status import read_status

    record = read_status(name)
    if as_json:
        write_out(json_line(record))
        return
    age = time.time() - record.get("updated", 0)
    lines = [
        f"exporter {record['name']}: {record['state']} (updated {age:,.0f}s ago, "
        f"pid {record.get('pid')})",
        f"  topics   {', '.join(record['topics'])} → {record['sink']} ({record['format']})",
        f"  rows     {record['rows']:,} in {record['batches']:,} batches, "
        f"{human_bytes(record['bytes'])} of payloads",
        f"  files    {record['files']:,}" + (f", last {record['last_file']}"
                                              if record.get("last_file") else ""),
        f"  lag      {record['lag']:,}",
        f"  dead     {record['dead_letters']:,} dead letters",
        f"  error    {record.get('last_error') or '-'}",
    ]
    stdout.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
