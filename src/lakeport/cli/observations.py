"""``lakeport observations ...``: insert, upload CSV, query, latest, aggregate, download and
delete sensor observations on a running lakeport server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from lakeport.cli.common import human_bytes, json_line, stderr, write_out
from lakeport.cli.remote import (
    ApiKeyOption,
    JsonOption,
    ServerOption,
    call,
    show_record,
    show_records,
)
from lakeport.errors import Invalid

app = typer.Typer(
    help="Sensor observations on a lakeport server: insert, upload CSV, query, latest, "
    "aggregate, download, delete.\n\n"
    "Example: lakeport observations upload readings.csv --sensor pump-1 && "
    "lakeport observations query --sensor pump-1 --start 2026-01-01",
    no_args_is_help=True,
)

SensorOption = Annotated[str | None, typer.Option("--sensor", help="Only this sensor.",
                                                  show_default=False)]
PropertyOption = Annotated[str | None, typer.Option(
    "--property", help="Only this observed property.", show_default=False)]
FeatureOption = Annotated[str | None, typer.Option("--feature", help="Only this feature.",
                                                   show_default=False)]
StartOption = Annotated[str | None, typer.Option(
    "--start", help="From this time on (inclusive): ISO 8601, epoch ms or "
    "'15-Jul-2019 12:35:56 IST'.", show_default=False)]
EndOption = Annotated[str | None, typer.Option(
    "--end", help="Before this time (exclusive).", show_default=False)]
RoutingOption = Annotated[str, typer.Option(
    "--routing", help="db: store; stream: publish to topic observations.<sensor> only; "
    "both.")]

def _value(text: str) -> Any:
    """A command-line value: JSON when it parses (21.5, true, {...}), else the text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _routing(routing: str) -> Any:
    if routing not in ("db", "stream", "both"):
        raise Invalid(f"--routing: use db, stream or both, not {routing!r}")
    return routing


def _stored(answer: dict[str, int], as_json: bool, where: str = "") -> None:
    if as_json:
        write_out(json_line(answer))
        return
    stderr.print(f"stored {answer.get('stored', 0):,} and published {answer.get('published', 0):,}"
                 f" observations{where}", markup=False)


@app.command()
def insert(
    sensor: Annotated[str, typer.Argument(help="Sensor name.", show_default=False)],
    prop: Annotated[str, typer.Argument(metavar="PROPERTY", help="Observed property.",
                                        show_default=False)],
    value: Annotated[str, typer.Argument(help="The value (JSON, else text).",
                                         show_default=False)],
    time: Annotated[str | None, typer.Option(help="When (default: now).",
                                             show_default=False)] = None,
    feature: FeatureOption = None, routing: RoutingOption = "db", as_json: JsonOption = False,
    url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Insert one observation.

    Example: lakeport observations insert pump-1 temperature 21.5 --time 2026-01-15T08:00:00Z
    """
    answer = call(url, api_key, lambda c: c.observations.insert(
        sensor, prop, _value(value), time=time, feature=feature, routing=_routing(routing)))
    _stored(answer, as_json)


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(help="CSV file: header time,<property>,... "
                                         "(optional sensor and feature columns); - for stdin.",
                                         show_default=False)],
    sensor: SensorOption = None, feature: FeatureOption = None, routing: RoutingOption = "db",
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Upload a CSV file of observations (all rows or none; a bad row names its line)."""
    source: Any = sys.stdin.buffer if str(file) == "-" else file
    answer = call(url, api_key, lambda c: c.observations.upload_csv(
        source, sensor=sensor, feature=feature, routing=_routing(routing)))
    _stored(answer, as_json, f" from {file}")


@app.command()
def query(
    sensor: SensorOption = None, prop: PropertyOption = None, feature: FeatureOption = None,
    start: StartOption = None, end: EndOption = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all; for whole "
                                       "ranges prefer download).")] = 100,
    order: Annotated[str, typer.Option(help="asc or desc (by time).")] = "asc",
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Query observations by sensor, property, feature and time range."""
    async def fetch(client: Any) -> list[dict[str, Any]]:
        if as_json:  # stream JSON lines page by page: no whole range in memory
            async for item in client.observations.iter(
                    sensor, prop, feature, start, end, order=order, limit=limit or None):
                write_out(json_line(item))
            return []
        return await client.observations.query(sensor, prop, feature, start, end,
                                               order=order, limit=limit or None)

    rows = call(url, api_key, fetch)
    if not as_json:
        from lakeport.client.observations import COLUMNS

        show_records(rows, False, COLUMNS, "no observations match")


@app.command()
def latest(
    sensor: SensorOption = None, prop: PropertyOption = None, feature: FeatureOption = None,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """The latest observation of each matching datastream."""
    from lakeport.client.observations import COLUMNS

    rows = call(url, api_key, lambda c: c.observations.latest(sensor, prop, feature))
    show_records(rows, as_json, None if as_json else COLUMNS, "no observations match")


@app.command()
def aggregate(
    sensor: SensorOption = None, prop: PropertyOption = None, feature: FeatureOption = None,
    start: StartOption = None, end: EndOption = None,
    bucket: Annotated[str, typer.Option(help="Time bucket: 1m, 1h or 1d.")] = "1h",
    fn: Annotated[str, typer.Option(help="Functions: avg,min,max,sum,count,first,last.")]
    = "avg,min,max,count",
    tz: Annotated[str, typer.Option(
        "--tz", help="Buckets start at this zone's local minute, hour or midnight: an IANA "
        "name (Asia/Kolkata), an offset (+05:30) or an abbreviation (IST).")] = "UTC",
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Aggregate observations per time bucket (bucket: its start in UTC).

    Example: lakeport observations aggregate --sensor pump-1 --bucket 1d --tz Asia/Kolkata
    --fn sum,count
    """
    fns = [name.strip() for name in fn.split(",") if name.strip()]
    rows = call(url, api_key, lambda c: c.observations.aggregate(
        sensor, prop, feature, start, end, bucket=bucket, fns=fns, tz=tz))
    show_records(rows, as_json, None, "no observations match")


@app.command()
def count(
    sensor: SensorOption = None, prop: PropertyOption = None, feature: FeatureOption = None,
    start: StartOption = None, end: EndOption = None, url: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """How many observations match."""
    print(call(url, api_key, lambda c: c.observations.count(sensor, prop, feature, start, end)))


@app.command()
def counts(as_json: JsonOption = False, url: ServerOption = None,
           api_key: ApiKeyOption = None) -> None:
    """How many features, sensors, properties, datastreams and observations there are."""
    show_record(call(url, api_key, lambda c: c.observations.counts()), as_json)


@app.command()
def datastreams(
    sensor: SensorOption = None, prop: PropertyOption = None, feature: FeatureOption = None,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """The datastreams (sensor, property, feature) with their observation counts."""
    rows = call(url, api_key, lambda c: c.observations.datastreams(sensor, prop, feature))
    show_records(rows, as_json, None, "no datastreams match")


@app.command()
def delete(
    sensor: Annotated[str, typer.Option("--sensor", help="The sensor whose observations go.",
                                        show_default=False)],
    prop: PropertyOption = None, feature: FeatureOption = None,
    start: StartOption = None, end: EndOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Delete a sensor's observations in a time range (no --start / --end: from the first /
    to the last); only the sensor's owner may.

    Example: lakeport observations delete --sensor pump-1 --start 2026-01-01 --end 2026-02-01
    """
    what = " ".join(f"{label} {value}" for label, value in (
        ("of property", prop), ("of feature", feature), ("from", start), ("before", end))
        if value)
    question = f"Delete the observations of sensor {sensor!r}{' ' + what if what else ''}?"
    if not yes:
        if not sys.stdin.isatty():
            raise Invalid(f"deleting observations of sensor {sensor!r} needs confirmation: "
                          "add --yes")
        typer.confirm(question, abort=True)
    deleted = call(url, api_key, lambda c: c.observations.delete_observations(
        sensor, start, end, property=prop, feature=feature))
    if as_json:
        write_out(json_line({"deleted": deleted}))
    else:
        stderr.print(f"deleted {deleted:,} observations of sensor {sensor}", markup=False)


@app.command()
def download(
    file: Annotated[Path, typer.Argument(help="Where to save (- for stdout).",
                                         show_default=False)],
    sensor: SensorOption = None, prop: PropertyOption = None, feature: FeatureOption = None,
    start: StartOption = None, end: EndOption = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="csv or parquet (default: from the file name, else csv).",
        show_default=False)] = None,
    url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Download the observations of a time range as CSV or Parquet (streamed)."""
    to_stdout = str(file) == "-"
    kind = fmt or ("parquet" if file.suffix.lower() == ".parquet" else "csv")
    dest: Any = sys.stdout.buffer if to_stdout else file
    written = call(url, api_key, lambda c: c.observations.download(
        dest, sensor, prop, feature, start, end, format=kind))
    if to_stdout:
        sys.stdout.buffer.flush()
    else:
        stderr.print(f"saved {human_bytes(written)} of {kind} to {file}", markup=False)


__all__ = ["app"]
