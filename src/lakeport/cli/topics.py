"""``lakeport topics ...``: create, list, show, delete, produce to and consume from topics."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lakeport.cli.common import (
    FormatChoice,
    ModeChoice,
    PersistenceChoice,
    UrlOption,
    duration,
    human_age,
    human_bytes,
    human_duration,
    json_line,
    on_engine,
    parse_option,
    parse_pairs,
    run,
    short_time,
    stderr,
    stdout,
    write_out,
)
from lakeport.errors import Invalid
from lakeport.units import parse_size

if TYPE_CHECKING:
    from lakeport.streams.base import Engine
    from lakeport.streams.types import TopicInfo, TopicOptions

app = typer.Typer(
    help="Create, inspect, produce to and consume from durable topics.\n\n"
    "Example: lakeport topics produce raw-sensor-data '{\"temp\": 10}' && "
    "lakeport topics consume raw-sensor-data --payload-only --position beginning",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Topic name (A-Z a-z 0-9 and + _ = : @ . -).")]


def _topic_options(fmt: FormatChoice, max_size: str | None, max_age: str | None,
                   persistence: PersistenceChoice, replicas: int | None = None) -> TopicOptions:
    from lakeport.streams.types import Format, Persistence, TopicOptions

    size = parse_option(parse_size, max_size, "--max-size")
    age = duration(max_age, "--max-age")
    for option, value in (("--max-size", size), ("--max-age", age)):
        if value is not None and value <= 0:
            raise Invalid(f"{option}: must be more than 0")
    return TopicOptions(format=Format(fmt), persistence=Persistence(persistence),
                        max_size=size, max_age=age, replicas=replicas)


@app.command()
def create(
    name: NameArg,
    fmt: Annotated[FormatChoice, typer.Option(
        "--format", help="Payload format.")] = FormatChoice.JSON,
    max_size: Annotated[str | None, typer.Option(
        help="Retention: keep at most this many bytes, e.g. 512MB, 1GiB.")] = None,
    max_age: Annotated[str | None, typer.Option(
        help="Retention: keep messages at most this long, e.g. 7d, 12h.")] = None,
    persistence: Annotated[PersistenceChoice, typer.Option(
        help="disk survives restarts; ram is faster, lost on reboot.")] = PersistenceChoice.DISK,
    replicas: Annotated[int | None, typer.Option(
        min=1, max=5, help="Copies kept on a NATS cluster (1-5); default: the URL's "
        "?replicas= or 1. Other engines keep one copy.")] = None,
    exist_ok: Annotated[bool, typer.Option(
        "--exist-ok", help="Succeed if the topic already exists.")] = False,
    url: UrlOption = None,
) -> None:
    """Create a topic.

    Example: lakeport topics create raw-sensor-data --max-size 512MB --max-age 7d

    On a NATS cluster: lakeport topics create raw-sensor-data --replicas 3
    --url nats://a:4222,b:4222,c:4222
    """
    options = _topic_options(fmt, max_size, max_age, persistence, replicas)

    run(on_engine(url, lambda engine: engine.create_topic(name, options, exist_ok=exist_ok)))
    stderr.print(f"created topic [bold]{name}[/] ({options.format.value})")


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    url: UrlOption = None,
) -> None:
    """List every topic with its size, seqno range and consumers."""

    topics: list[TopicInfo] = run(on_engine(url, lambda engine: engine.list_topics()))
    if as_json:
        write_out(json_line([info.to_dict() for info in topics]))
        return
    table = Table("topic", "format", "entries", "size", "seqnos", "newest", "consumers",
                  box=None, header_style="bold")
    for info in topics:
        record = info.to_dict()
        table.add_row(info.name, record["format"], f"{info.entries:,}", human_bytes(info.bytes),
                      _seqno_range(info), short_time(record["newest"]),
                      str(len(info.consumers)))
    if not topics:
        stderr.print("no topics yet: lakeport topics create NAME, or produce to one")
        return
    stdout.print(table)


def _seqno_range(info: TopicInfo) -> str:
    return f"{info.first_seqno}-{info.last_seqno}" if info.entries else "-"


@app.command()
def show(
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the info as JSON.")] = False,
    url: UrlOption = None,
) -> None:
    """Show a topic: options, seqno range, entries, bytes, times, consumers and their lag."""
    from lakeport.streams.unacked import with_oldest_unacked

    async def shown(engine: Engine) -> TopicInfo:
        return await with_oldest_unacked(engine, await engine.topic_info(name))

    info: TopicInfo = run(on_engine(url, shown))
    record = info.to_dict()
    if as_json:
        write_out(json_line(record))
        return
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    retention = ", ".join(
        part for part in (
            info.options.max_size and f"max size {human_bytes(info.options.max_size)}",
            info.options.max_age and f"max age {human_duration(info.options.max_age)}",
        ) if part
    ) or "none"
    for label, value in (
        ("topic", info.name),
        ("format", record["format"]),
        ("persistence", record["persistence"]),
        ("retention", retention),
        ("replicas", record["replicas"]),
        ("seqnos", _seqno_range(info)),
        ("entries", f"{info.entries:,}"),
        ("size", human_bytes(info.bytes)),
        ("oldest", record["oldest"] or "-"),
        ("newest", record["newest"] or "-"),
    ):
        table.add_row(label, str(value))
    stdout.print(table)
    if info.consumers:
        consumers = Table("consumer", "mode", "acked", "lag", "oldest unacked", "open",
                          box=None, header_style="bold")
        now = time.time()
        for consumer in info.consumers:
            stamp = consumer.oldest_unacked_ns
            age = human_age(None if stamp is None else max(0.0, now - stamp / 1e9))
            consumers.add_row(consumer.name, consumer.mode, str(consumer.acked),
                              f"{consumer.lag:,}", age, str(consumer.active))
        stdout.print()
        stdout.print(consumers)


@app.command()
def delete(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
) -> None:
    """Delete a topic and all its messages; open consumers are told."""
    if not yes:
        if not sys.stdin.isatty():
            raise Invalid(f"deleting topic {name!r} needs confirmation: add --yes")
        typer.confirm(f"Delete topic {name!r} and all its messages?", abort=True)

    run(on_engine(url, lambda engine: engine.delete_topic(name)))
    stderr.print(f"deleted topic [bold]{name}[/]")


@app.command()
def produce(
    name: NameArg,
    payload: Annotated[str, typer.Argument(
        help="The payload, or - to read one message per line from standard input.")],
    print_seqno: Annotated[bool, typer.Option(
        "--print-seqno", help="Print each message's seqno once it is durable.")] = False,
    key: Annotated[str | None, typer.Option(help="Message key.")] = None,
    header: Annotated[list[str] | None, typer.Option(
        "--header", "-H", help="A header key=value (repeatable).")] = None,
    msg_id: Annotated[str | None, typer.Option(
        help="Idempotency id: the same id within the dedup window is stored once.")] = None,
    producer: Annotated[str, typer.Option(help="Producer name stored with messages.")] = "cli",
    fmt: Annotated[FormatChoice, typer.Option(
        "--format", help="Format used if the topic is created.")] = FormatChoice.JSON,
    url: UrlOption = None,
) -> None:
    """Produce a message (or one per line of stdin with -); the topic is created if missing.

    Examples:

      lakeport topics produce raw-sensor-data '{"temp": 10}'

      cat readings.jsonl | lakeport topics produce raw-sensor-data - --print-seqno

    Blank stdin lines are skipped. Payloads are checked against the topic's format.
    """
    from lakeport.cli.produce import produce_lines, produce_one
    from lakeport.streams.types import Format, TopicOptions

    headers = parse_pairs(header, "--header", "bad {option} {pair!r}: use key=value") or None
    options = TopicOptions(format=Format(fmt))
    if payload == "-":
        if headers or key is not None or msg_id is not None:
            raise Invalid("--key, --header and --msg-id apply to a single payload, not to -")
        run(produce_lines(url, name, producer, options, print_seqno))
    else:
        run(produce_one(url, name, producer, options, payload.encode(),
                        headers=headers, key=key, msg_id=msg_id, print_seqno=print_seqno))


@app.command()
def consume(
    name: NameArg,
    position: Annotated[str | None, typer.Option(
        help="Where to start: beginning, end, unread, seqno:N, since:10m, "
        "time:2026-01-01T00:00:00Z. Default: unread with --consumer, else end with "
        "--follow, else beginning.", show_default=False)] = None,
    consumer: Annotated[str | None, typer.Option(
        help="Consumer name; acks are stored under it so --position unread resumes. "
        "Default: a throwaway name cli-<pid> that does not ack and leaves no state.",
        show_default=False)] = None,
    mode: Annotated[ModeChoice, typer.Option(
        help="exclusive: one reader per name; shared: readers of a name split messages; "
        "standby: one active, others take over.")] = ModeChoice.EXCLUSIVE,
    payload_only: Annotated[bool, typer.Option(
        "--payload-only", help="Print only payloads (JSON, text or raw bytes per line).")] = False,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep waiting for new messages (stop with Ctrl-C).")] = False,
    timeout: Annotated[str | None, typer.Option(
        help="Stop when no message arrives for this long, e.g. 2s, 30s.")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", "-n", min=1, help="Stop after this many messages.")] = None,
    match: Annotated[str | None, typer.Option(
        help="Only messages whose payload matches this regular expression.")] = None,
    no_match: Annotated[str | None, typer.Option(
        help="Skip messages whose payload matches this regular expression.")] = None,
    ack: Annotated[bool | None, typer.Option(
        "--ack/--no-ack", help="Ack printed messages. Default: on with --consumer.",
        show_default=False)] = None,
    url: UrlOption = None,
) -> None:
    """Print messages of a topic, one JSON object per line (seqno, time, producer, payload).

    Without --follow it stops at the end the topic had when it started.

    Examples:

      lakeport topics consume raw-sensor-data --payload-only --position beginning --timeout 2s

      lakeport topics consume transformed-data --payload-only --follow

      lakeport topics consume raw-sensor-data --consumer exporter --position unread -n 100
    """
    from lakeport.cli.consume import ConsumeRequest, consume_to_stdout
    from lakeport.streams.types import Filters, Mode, Position

    if position is None:
        position = "unread" if consumer else ("end" if follow else "beginning")
    request = ConsumeRequest(
        url=url,
        topic=name,
        consumer=consumer or f"cli-{os.getpid()}",
        mode=Mode(mode),
        position=Position.parse(position),
        filters=Filters(match_re=match, no_match_re=no_match),
        follow=follow,
        timeout=duration(timeout, "--timeout"),
        limit=limit,
        ack=ack if ack is not None else consumer is not None,
        ephemeral=consumer is None,
        payload_only=payload_only,
    )
    run(consume_to_stdout(request))
