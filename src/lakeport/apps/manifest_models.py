"""The model of an ``app.yaml`` manifest (spec_version 5), key for key the vendor's v5 model.

One model holds the keys of all four types (``app``, ``importer``, ``exporter``, ``docker``);
:data:`NOT_READ` lists, per type, the keys the vendor's model of that type does not read.
:func:`split_unused` takes those and every unknown key out of a document before validation and
names them as warnings, as the vendor ignores them; only ``defaults.system`` (which the vendor
passes to its platform unchecked) refuses unknown keys. :func:`conversion_problems` adds the
checks the vendor makes when it turns an app.yaml into its platform manifest.
"""

from __future__ import annotations

import copy
import difflib
import re
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema, field_validator

from lakeport.apps.manifest_problems import kind_of, model_in, validation_problems
from lakeport.apps.manifest_sections import (
    IO,
    ControlChanges,
    CustomActions,
    DataQuality,
    DataStream,
    DataStreams,
    DataTags,
    Defaults,
    Flags,
    Parameter,
    Recommendations,
    Section,
    UiSchemas,
    primitive_type,
)
from lakeport.apps.manifest_system import (
    DNS_NAME,
    SEMVER,
    SPEC_VERSION,
    EnvVar,
    Port,
    Resources,
    Strict,
    Volume,
    duplicate_problems,
    list_duplicates,
    parse_quantity,
    problem,
)

AppType = Literal["app", "importer", "exporter", "docker"]
APP_TYPES: tuple[str, ...] = typing.get_args(AppType)
SPEC_MAJOR = 5
LEGACY_TYPES = ("kelvin", "bridge", "legacy_docker")
IGNORED = "not used (the vendor's format ignores it)"

# The sections each type reads; a section of another type is ignored (with a warning).
TYPE_SECTIONS: dict[str, tuple[str, ...]] = {
    "app": ("data_streams", "control_changes", "parameters", "data_quality", "custom_actions",
            "data_tags", "recommendations"),
    "importer": ("importer_io", "data_quality", "custom_actions"),
    "exporter": ("exporter_io", "data_quality", "custom_actions"),
    "docker": (),
}
ALL_SECTIONS = ("exporter_io", "importer_io", "data_streams", "control_changes", "parameters",
                "data_quality", "custom_actions", "data_tags", "recommendations")
_ONLY_APP = ("flags.enable_runtime_update.parameters",
             "flags.enable_runtime_update.resource_properties", "ui_schemas.parameters",
             "defaults.parameters", "defaults.datastream_mapping")
# Keys inside the common sections that the vendor's model of a type does not have.
NOT_READ: dict[str, tuple[str, ...]] = {
    "app": ("flags.resources_required", "ui_schemas.io_configuration"),
    "importer": _ONLY_APP,
    "exporter": (*_ONLY_APP, "exporter_io[].control"),
    "docker": (*_ONLY_APP, "flags.resources_required", "ui_schemas.io_configuration",
               "ui_schemas.custom_actions"),
}


def _number_to_text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class ManifestModel(Section):
    """The fields of app.yaml; :class:`lakeport.apps.manifest.Manifest` adds behaviour."""

    spec_version: Annotated[str, BeforeValidator(_number_to_text), Field(
        pattern=SPEC_VERSION, description="The app.yaml format: 5.0.0 (the default)."),
        WithJsonSchema({"anyOf": [{"type": "string", "pattern": SPEC_VERSION},
                                  {"type": "number"}],
                        "description": "The app.yaml format: 5.0.0 (the default)."})] = "5.0.0"
    type: AppType = Field(description="app (a SmartApp), importer, exporter or docker.")
    name: str = Field(pattern=DNS_NAME, description="Lowercase letters, digits and '-'.")
    title: str = Field("", description="The name people read (the vendor requires it).")
    description: str = Field("", max_length=256, description="What the app does (at most 256 "
                             "characters; the vendor requires it).")
    version: Annotated[str, BeforeValidator(_number_to_text)] = Field(
        pattern=SEMVER, description="The app's version: x.y.z[-pre][+build].")
    category: str | None = Field(None, description="A category for the app registry.")
    flags: Flags = Field(default_factory=Flags, description="Runtime update and deployment "
                         "flags.")
    ui_schemas: UiSchemas = Field(default_factory=UiSchemas,
                                  description="JSON Schema files, relative to the app folder.")
    defaults: Defaults = Field(default_factory=Defaults, description="Configuration, system, "
                               "parameter values and data stream mapping of a deployment.")
    api_permissions: list[str] | None = Field(None, description="Platform API permissions the "
                                              "app needs.")
    exporter_io: list[IO] = Field(default_factory=list,
                                  description="Type exporter: the data it receives.")
    importer_io: list[IO] = Field(default_factory=list,
                                  description="Type importer: the data it imports and the "
                                  "control changes it takes.")
    data_streams: DataStreams = Field(default_factory=DataStreams,
                                      description="Type app: data streams read and written.")
    control_changes: ControlChanges = Field(default_factory=ControlChanges,
                                            description="Type app: control changes received "
                                            "and sent.")
    parameters: list[Parameter] = Field(default_factory=list,
                                        description="Type app: asset parameters it reads.")
    data_quality: DataQuality = Field(default_factory=DataQuality,
                                      description="Types app, importer, exporter: data quality "
                                      "metrics read and computed.")
    custom_actions: CustomActions = Field(default_factory=CustomActions,
                                          description="Types app, importer, exporter: custom "
                                          "actions executed and created.")
    data_tags: DataTags = Field(default_factory=DataTags,
                                description="Type app: data tags read and created.")
    recommendations: Recommendations = Field(default_factory=Recommendations,
                                             description="Type app: recommendation types it "
                                             "publishes.")

    @field_validator("spec_version")
    @classmethod
    def _supported_spec(cls, value: str) -> str:
        match = re.match(SPEC_VERSION, value)
        if match and int(match.group(1)) != SPEC_MAJOR:
            raise problem(f"{value} is not supported: this lakeport reads spec_version "
                          f"{SPEC_MAJOR} (such as {SPEC_MAJOR}.0.0)")
        return value


# -- the old format ----------------------------------------------------------------------------
def old_format_problem(data: dict[str, Any]) -> str | None:
    """One line for a spec_version 4 (or older) app.yaml: what to rename for version 5."""
    spec = data.get("spec_version")
    text = _number_to_text(spec)
    match = re.match(SPEC_VERSION, text) if isinstance(text, str) else None
    app = data.get("app")
    legacy_type = data.get("type") in LEGACY_TYPES or (
        "type" not in data and isinstance(app, dict) and "type" in app)
    if not legacy_type and not (match and int(match.group(1)) < SPEC_MAJOR):
        return None
    return (f"spec_version: {spec if spec is not None else 'missing'}: the old app.yaml format; "
            "lakeport reads 5.0.0: move info.* to the top level, app.type kelvin to type: app, "
            "app.kelvin.inputs/outputs to data_streams, app.kelvin.configuration to "
            "defaults.configuration, system to defaults.system, then set spec_version: 5.0.0")


# -- keys the vendor does not read -------------------------------------------------------------
def split_unused(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``data`` without the keys the vendor's model of its type does not read, and a warning
    naming each of them."""
    kind = data.get("type")
    if kind not in APP_TYPES:
        return data, []
    data = copy.deepcopy(data)
    warnings = [f"{section}: not used by type {kind} (the vendor's format ignores it)"
                for section in ALL_SECTIONS
                if section in data and section not in TYPE_SECTIONS[kind]]
    for section in ALL_SECTIONS:
        if section not in TYPE_SECTIONS[kind]:
            data.pop(section, None)
    for path in NOT_READ[kind]:
        for where in _remove(data, path.split("."), ""):
            warnings.append(f"{where}: not used by type {kind} (the vendor's format ignores it)")
    warnings += [f"{where}: {IGNORED}{hint}" for where, hint in _unknown(ManifestModel, data, "")]
    return data, warnings


def _remove(value: Any, parts: list[str], where: str) -> Iterator[str]:
    """Remove ``parts`` (``name`` or ``name[]`` for each item of a list) from ``value``."""
    if not parts or not isinstance(value, dict):
        return
    key, each = parts[0].removesuffix("[]"), parts[0].endswith("[]")
    if key not in value:
        return
    path = f"{where}.{key}" if where else key
    if len(parts) == 1:
        del value[key]
        yield path
    elif each and isinstance(value[key], list):
        for index, item in enumerate(value[key]):
            yield from _remove(item, parts[1:], f"{path}[{index}]")
    elif not each:
        yield from _remove(value[key], parts[1:], path)


_HINTS = {
    ("Parameter", "default"): ": give the value in defaults.parameters",
}


def _unknown(model: type[BaseModel], value: Any, where: str) -> Iterator[tuple[str, str]]:
    """``(path, hint)`` of every key in ``value`` that ``model`` (and its sections) ignores;
    lakeport's strict models report theirs as errors."""
    if not isinstance(value, dict) or issubclass(model, Strict):
        return
    for key, item in value.items():
        path = f"{where}.{key}" if where else str(key)
        field = model.model_fields.get(str(key))
        if field is None:
            close = difflib.get_close_matches(str(key), list(model.model_fields), n=1,
                                              cutoff=0.75)
            hint = _HINTS.get((model.__name__, str(key)))
            yield path, hint or (f" (did you mean {close[0]}?)" if close else "")
            continue
        inner = model_in(field.annotation)
        if inner is None:
            continue
        if isinstance(item, list):
            for index, element in enumerate(item):
                yield from _unknown(inner, element, f"{path}[{index}]")
        elif typing.get_origin(field.annotation) is dict and isinstance(item, dict):
            for name, element in item.items():
                yield from _unknown(inner, element, f"{path}.{name}")
        else:
            yield from _unknown(inner, item, path)


# -- what the vendor checks when it builds its platform manifest -------------------------------
def conversion_problems(model: ManifestModel) -> list[tuple[str, str]]:
    """``(path, message)`` for what the vendor refuses when it converts the app.yaml."""
    found: list[tuple[str, str]] = []
    if model.type == "app":
        found += _app_io_problems(model)
        seen: set[str] = set()
        for index, recommendation in enumerate(model.recommendations.outputs):
            if recommendation.type in seen:
                found.append((f"recommendations.outputs[{index}].type",
                              f"duplicate recommendation type '{recommendation.type}'"))
            seen.add(recommendation.type)
    if model.type != "docker":
        for side in ("inputs", "outputs"):
            for index, item in enumerate(getattr(model.data_quality, side)):
                where = f"data_quality.{side}[{index}]"
                if item.type == "asset" and item.data_streams:
                    found.append((f"{where}.data_streams",
                                  "not allowed with type asset (use type: asset-datastream)"))
                if side == "outputs" and item.name.startswith("kelvin_"):
                    found.append((f"{where}.name", "must not start with kelvin_ (kept for the "
                                                   "platform's own data quality metrics)"))
        declared = {a.type for a in (*model.custom_actions.inputs, *model.custom_actions.outputs)}
        for action in model.ui_schemas.custom_actions:
            if action not in declared:
                found.append((f"ui_schemas.custom_actions.{action}",
                              "not a custom action type in custom_actions.inputs or outputs"))
    return found


def _app_io_problems(model: ManifestModel) -> list[tuple[str, str]]:
    """The vendor's rules for names in data_streams and control_changes: unique in each list,
    never both read and written as data; a control change input may share its name with a
    data stream output, a control change output with a data stream input (same data type and
    unit)."""
    found: list[tuple[str, str]] = []
    ways: dict[str, tuple[str, DataStream]] = {}
    combines = {"control_changes.inputs": "data_streams.outputs",
                "control_changes.outputs": "data_streams.inputs"}
    for where in ("data_streams.inputs", "data_streams.outputs", "control_changes.inputs",
                  "control_changes.outputs"):
        section, side = where.split(".")
        streams: list[DataStream] = getattr(getattr(model, section), side)
        repeated = list_duplicates([{"name": s.name} for s in streams], where)
        found += repeated
        skip = {path for path, _ in repeated}
        for index, stream in enumerate(streams):
            path = f"{where}[{index}].name"
            if path in skip:
                continue
            earlier = ways.get(stream.name)
            if earlier is None:
                ways[stream.name] = (where, stream)
            elif earlier[0] != combines.get(where):
                found.append((path, f"'{stream.name}' is also in {earlier[0]}"))
            elif (earlier[1].data_type, earlier[1].unit) != (stream.data_type, stream.unit):
                found.append((path, f"'{stream.name}' has another data type or unit in "
                                    f"{earlier[0]}"))
            else:
                ways[stream.name] = (f"{earlier[0]} and {where}", stream)
    return found


def soft_warnings(data: dict[str, Any], model: ManifestModel) -> list[str]:
    """Warnings about what lakeport accepts and the vendor's tools do not, or may not mean."""
    found: list[str] = []
    if "title" not in data:
        found.append("title: missing (the vendor's tools require it)")
    if "description" not in data:
        found.append("description: missing (the vendor's tools require it)")
    spec = data.get("spec_version")
    if spec is not None and not (isinstance(spec, str) and re.match(SEMVER, spec)):
        found.append(f"spec_version: write 5.0.0 (the vendor's tools refuse {spec!r})")
    if len(model.name) > 63:
        found.append("name: longer than 63 characters: a Kubernetes deployment refuses it")
    if model.type == "exporter" and not model.exporter_io:
        found.append("exporter_io: none: the exporter receives no data (add - name: default)")
    for where in ("exporter_io", "importer_io"):  # the vendor keeps repeated IOs
        found += [f"{path}: {message}" for path, message in list_duplicates(
            [{"name": io.name} for io in getattr(model, where)], where)]
    if model.type == "app":
        declared = {p.name for p in model.parameters}
        found += [f"defaults.parameters.{name}: not a parameter in parameters: {IGNORED}"
                  for name in model.defaults.parameters if name not in declared]
    return found


__all__ = [
    "APP_TYPES",
    "IO",
    "ControlChanges",
    "DataStream",
    "DataStreams",
    "EnvVar",
    "ManifestModel",
    "Parameter",
    "Port",
    "Resources",
    "Volume",
    "conversion_problems",
    "duplicate_problems",
    "kind_of",
    "old_format_problem",
    "parse_quantity",
    "primitive_type",
    "soft_warnings",
    "split_unused",
    "validation_problems",
]
