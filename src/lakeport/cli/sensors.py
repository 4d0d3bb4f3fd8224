"""``lakeport sensors|features|properties ...``: the observation service's resources on a
running server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakeport.cli.common import json_line, stderr, write_out
from lakeport.cli.remote import (
    ApiKeyOption,
    JsonOption,
    LimitOption,
    NameArg,
    ServerOption,
    call,
    parse_json,
    show_record,
    show_records,
)
from lakeport.errors import Invalid

if TYPE_CHECKING:
    from lakeport.client import Client
    from lakeport.client.resources import Resources


def _add_common(app: typer.Typer, service: str, noun: str, columns: Sequence[str]) -> None:
    """``list``, ``show`` and ``delete`` of one kind of resource."""

    def resources(client: Client) -> Resources:
        return getattr(client.observations, service)

    @app.command("list")
    def list_(limit: LimitOption = None, as_json: JsonOption = False,
              url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
        rows = call(url, api_key, lambda c: resources(c).list(limit=limit))
        show_records(rows, as_json, columns if not as_json else None,
                     f"no {service} yet: lakeport {service} create NAME")

    list_.__doc__ = f"List {service}."

    @app.command()
    def show(name: NameArg, as_json: JsonOption = False, url: ServerOption = None,
             api_key: ApiKeyOption = None) -> None:
        show_record(call(url, api_key, lambda c: resources(c).get(name)), as_json)

    show.__doc__ = f"Show one {noun}."

    @app.command()
    def delete(name: NameArg, url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
        call(url, api_key, lambda c: resources(c).delete(name))
        stderr.print(f"deleted {noun} {name}", markup=False)

    delete.__doc__ = f"Delete a {noun} (only its owner may)."


def _created(record: Mapping[str, Any], noun: str, as_json: bool) -> None:
    if as_json:
        write_out(json_line(record))
    else:
        stderr.print(f"created {noun} {record.get('name')}", markup=False)


app = typer.Typer(
    help="Sensors on a lakeport server (see also: lakeport features, lakeport properties).\n\n"
    "Example: lakeport sensors create pump-1 --description 'inlet pump'",
    no_args_is_help=True,
)
features_app = typer.Typer(
    help="Features of interest (what sensors observe, in a hierarchy) on a lakeport server.\n\n"
    "Example: lakeport features create line-1 --parent plant-a --point 7.6,45.1",
    no_args_is_help=True,
)
properties_app = typer.Typer(
    help="Observed properties (name, unit, data type) on a lakeport server.\n\n"
    "Example: lakeport properties create temperature --unit degC --data-type number",
    no_args_is_help=True,
)


@app.command()
def create(
    name: NameArg,
    description: Annotated[str | None, typer.Option(help="What it is.")] = None,
    kind: Annotated[str | None, typer.Option(help="atomic or composite.",
                                             show_default=False)] = None,
    component: Annotated[list[str] | None, typer.Option(
        "--component", help="A component sensor of a composite (repeatable).",
        show_default=False)] = None,
    metadata: Annotated[str | None, typer.Option(
        help="Free metadata as a JSON object.", show_default=False)] = None,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Register a sensor."""
    meta = parse_json(metadata, "--metadata")
    record = call(url, api_key, lambda c: c.observations.sensors.create(
        name, description=description, kind=kind, components=component, metadata=meta))
    _created(record, "sensor", as_json)


@features_app.command("create")
def create_feature(
    name: NameArg,
    description: Annotated[str | None, typer.Option(help="What it is.")] = None,
    parent: Annotated[str | None, typer.Option(help="The parent feature's name.",
                                               show_default=False)] = None,
    point: Annotated[str | None, typer.Option(
        help="Location as lon,lat (a GeoJSON Point).", show_default=False)] = None,
    properties: Annotated[str | None, typer.Option(
        help="Free properties as a JSON object.", show_default=False)] = None,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Register a feature of interest."""
    geometry = None
    if point is not None:
        try:
            geometry = tuple(float(part) for part in point.split(","))
        except ValueError:
            raise Invalid(f"--point: expected lon,lat numbers, got {point!r}") from None
    props = parse_json(properties, "--properties")
    record = call(url, api_key, lambda c: c.observations.features.create(
        name, description=description, parent=parent, geometry=geometry, properties=props))
    _created(record, "feature", as_json)


@properties_app.command("create")
def create_property(
    name: NameArg,
    unit: Annotated[str | None, typer.Option(help="Unit, e.g. degC.")] = None,
    data_type: Annotated[str | None, typer.Option(
        "--data-type", help="number (default), string, boolean or object.",
        show_default=False)] = None,
    description: Annotated[str | None, typer.Option(help="What it is.")] = None,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Register an observed property."""
    record = call(url, api_key, lambda c: c.observations.properties.create(
        name, unit=unit, data_type=data_type, description=description))
    _created(record, "observed property", as_json)


_add_common(app, "sensors", "sensor", ("name", "kind", "description", "owner", "created"))
_add_common(features_app, "features", "feature",
            ("name", "parent", "description", "geometry", "owner", "created"))
_add_common(properties_app, "properties", "observed property",
            ("name", "unit", "data_type", "description", "owner", "created"))

__all__ = ["app", "features_app", "properties_app"]
