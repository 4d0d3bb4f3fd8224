"""``lakeport forward``: forward an edge topic to a central lakeport (or NATS), exactly once;
``lakeport forward status``: what forwarders on this machine are doing."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lakeport.cli.common import (
    UrlOption,
    human_age,
    human_bytes,
    json_line,
    run,
    stderr,
    stop_on_signals,
    write_out,
)
from lakeport.errors import Invalid

app = typer.Typer(
    help="Forward an edge topic to a central lakeport, exactly once, over bad links.\n\n"
    "Example: lakeport forward --from raw-sensor-data --to "
    "'http://central:8400?api_key=lpk_...' --max-rate 1MB/s",
    invoke_without_command=True,
)


@app.callback()
def forward(
    ctx: typer.Context,
    from_topic: Annotated[str | None, typer.Option(
        "--from", help="The edge topic to forward.", show_default=False)] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="The central side: http(s)://host:port?api_key=lpk_... (a lakeport "
        "server; the key needs produce access) or nats://host:4222.", show_default=False)]
    = None,
    to_topic: Annotated[str | None, typer.Option(
        "--to-topic", help="The central topic (default: the edge topic's name, after "
        "--prefix).", show_default=False)] = None,
    prefix: Annotated[str | None, typer.Option(
        "--prefix", help="Put before the edge topic's name on the central side, e.g. "
        "site-a. (site-a.raw-sensor-data).", show_default=False)] = None,
    site: Annotated[str | None, typer.Option(
        "--site", help="This site's name, in msg_ids and the lakeport-site header "
        "(default: the host name).", show_default=False)] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="The edge consumer's name (default: forward:<central host>:<topic>).",
        show_default=False)] = None,
    max_rate: Annotated[str | None, typer.Option(
        "--max-rate", help="Bytes per second on the wire at most (after compression), "
        "e.g. 1MB/s.", show_default=False)] = None,
    batch: Annotated[int | None, typer.Option(
        "--batch", help="Messages per request at most (default 20000).", show_default=False)]
    = None,
    url: UrlOption = None,
) -> None:
    """Run a forwarder until Ctrl-C or SIGTERM (a key without produce access exits 1)."""
    if ctx.invoked_subcommand is not None:
        return
    from lakeport.forward import ForwardConfig

    if from_topic is None:
        raise Invalid("--from: required (the edge topic to forward)")
    if to is None:
        raise Invalid("--to: required (e.g. http://central:8400?api_key=lpk_...)")
    config = ForwardConfig.parse(from_topic=from_topic, to_url=to, to_topic=to_topic,
                                 prefix=prefix, site=site, name=name, max_rate=max_rate,
                                 batch_size=batch)
    run(_run(config, url))


async def _run(config: Any, url: str | None) -> None:
    from lakeport.forward import Forwarder
    from lakeport.streams import open_engine

    async with open_engine(url) as edge:
        forwarder = Forwarder(config, edge)
        stderr.print(f"forwarding {config.from_topic} to {config.shown_url} topic "
                     f"{config.target} as site {config.site} (Ctrl-C stops)", markup=False)
        with stop_on_signals() as stop:
            await forwarder.run(stop)
        status = forwarder.status
        stderr.print(f"stopped: {status.forwarded:,} messages forwarded, "
                     f"{human_bytes(status.wire_bytes)} on the wire, lag {status.lag:,}",
                     markup=False)


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(
        help="A forwarder's name (default: every forwarder that ran here).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per forwarder.")]
    = False,
) -> None:
    """The last status of forwarders on this machine: lag, oldest unforwarded age, errors."""
    from lakeport.forward import read_status

    for record in read_status(name):
        if as_json:
            write_out(json_line(record))
            continue
        age = record.get("oldest_unforwarded_age")
        line = (f"{record['name']} [{record['state']}] {record['from_topic']} -> "
                f"{record['to']} {record['to_topic']}: {record['forwarded']:,} forwarded, "
                f"lag {record['lag']:,}, oldest unforwarded {human_age(age)}, "
                f"{human_bytes(record['wire_bytes'])} on the wire")
        if record.get("last_error"):
            line += f" — {record['last_error']}"
        print(line)


__all__ = ["app"]
