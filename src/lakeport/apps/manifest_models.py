"""The pydantic models of an ``app.yaml`` manifest (spec_version 5).

Field names and shapes follow the Kelvin app.yaml format. Every model forbids unknown keys;
:mod:`lakeport.apps.manifest` loads files and turns validation errors into readable problems.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lakeport.readings import DATA_TYPES, DataType

AppType = Literal["app", "importer", "exporter", "docker"]
SPEC_MAJOR = 5

# Sections only some app types may have.
TYPE_SECTIONS: dict[str, tuple[str, ...]] = {
    "app": ("data_streams", "control_changes", "parameters"),
    "importer": ("importer_io",),
    "exporter": ("exporter_io",),
    "docker": (),
}
ALL_SECTIONS = ("exporter_io", "importer_io", "data_streams", "control_changes", "parameters")
REQUIRED_SECTIONS = {"importer": "importer_io", "exporter": "exporter_io"}

# Patterns and what to tell a user who does not match them.
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
STREAM_NAME = r"^[a-z0-9]([-_.a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SEMVER = (r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
          r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
SPEC_VERSION = r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
CPU_QUANTITY = r"^(\d+m|\d+(\.\d{1,3})?|\.\d{1,3})$"
MEMORY_QUANTITY = r"^\d+(\.\d+)?([kMGTPE]|[KMGTPE]i|[eE]\d+)?$"

PATTERN_MESSAGES = {
    DNS_NAME: "must be lowercase letters, digits and '-', starting and ending with a letter "
              "or digit",
    STREAM_NAME: "must be lowercase letters, digits, '-', '_' and '.', starting and ending "
                 "with a letter or digit",
    ENV_NAME: "must be letters, digits and '_', not starting with a digit",
    SEMVER: "must be a semantic version such as 1.0.0",
    SPEC_VERSION: "must be a version such as 5.0.0",
    CPU_QUANTITY: "must be a CPU quantity such as 100m, 0.5 or 2",
    MEMORY_QUANTITY: "must be a memory quantity such as 256Mi, 1Gi or 500M",
}


def problem(message: str, at: str = "") -> PydanticCustomError:
    """A validation error with our own message, ``at`` a sub-path (``host``, ``[2].name``)."""
    return PydanticCustomError("lakeport", "{message}", {"message": message, "at": at})


def _number_to_text(value: Any) -> Any:
    """YAML reads ``1``, ``0.5`` or ``5.0`` as numbers where the manifest wants text."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _scalar_to_text(value: Any) -> Any:
    """Environment variable values: numbers and booleans become text (``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _number_to_text(value)


def _text(pattern: str) -> Any:
    """A text field checked against ``pattern`` that also takes a YAML number."""
    return Annotated[str, BeforeValidator(_number_to_text), Field(pattern=pattern),
                     WithJsonSchema({"anyOf": [{"type": "string", "pattern": pattern},
                                               {"type": "number"}]})]


DnsName = Annotated[str, Field(pattern=DNS_NAME, max_length=63)]
StreamName = Annotated[str, Field(pattern=STREAM_NAME, max_length=64)]
CpuQuantity = _text(CPU_QUANTITY)
MemoryQuantity = _text(MEMORY_QUANTITY)
SpecVersion = _text(SPEC_VERSION)
Version = Annotated[str, BeforeValidator(_number_to_text), Field(pattern=SEMVER)]
EnvValue = Annotated[str, BeforeValidator(_scalar_to_text), WithJsonSchema(
    {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]})]


class Strict(BaseModel):
    """Every manifest model: unknown keys are errors, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


# -- flags and ui_schemas ---------------------------------------------------------------------
class RuntimeUpdate(Strict):
    """What may change while the app runs (otherwise a change is refused)."""

    configuration: bool = False
    io: bool = False
    resources: bool = False
    parameters: bool = False
    resource_properties: bool = False


class Flags(Strict):
    enable_runtime_update: RuntimeUpdate = Field(default_factory=RuntimeUpdate)


class UiSchemas(Strict):
    """Paths (relative to the app folder) of JSON Schema files."""

    configuration: str | None = None
    parameters: str | None = None
    io_configuration: dict[str, str] = Field(default_factory=dict)


# -- defaults.system --------------------------------------------------------------------------
class EnvVar(Strict):
    """An environment variable; ``value`` may hold ``<% secrets.NAME %>`` references."""

    name: Annotated[str, Field(pattern=ENV_NAME)]
    value: EnvValue = ""


class HostSource(Strict):
    source: str = Field(min_length=1)

    @field_validator("source")
    @classmethod
    def _absolute(cls, source: str) -> str:
        if not source.startswith("/"):
            raise problem("must be an absolute path on the host")
        return source


class TextContent(Strict):
    data: str
    base64: bool = False
    encoding: str = "utf-8"


class TypedSections(Strict):
    """A model whose ``type`` names the one section it must have (``host:``, ``text:``, ...)."""

    _what: ClassVar[str] = ""
    _sections: ClassVar[dict[str, str]] = {}

    @model_validator(mode="after")
    def _has_its_section(self) -> Any:
        example = self._sections.get(self.type)  # type: ignore[attr-defined]
        if example is not None and getattr(self, self.type) is None:  # type: ignore[attr-defined]
            raise problem(f"required for a {self.type} {self._what} ({example})",  # type: ignore[attr-defined]
                          self.type)  # type: ignore[attr-defined]
        return self


@classmethod  # type: ignore[misc]
def section_belongs_to_type(cls: type[TypedSections], value: Any, info: ValidationInfo) -> Any:
    """A section named after another type (``host:`` on a text volume) is an error."""
    kind = info.data.get("type")
    if kind is not None and info.field_name != kind:
        raise problem(f"not allowed for a {kind} {cls._what}")
    return value


class Volume(TypedSections):
    """A volume mounted at ``target``: ``persistent``, a ``host`` path, or ``text`` content."""

    name: DnsName
    target: str = Field(min_length=1)
    type: Literal["persistent", "host", "text"]
    host: HostSource | None = None
    text: TextContent | None = None

    _what: ClassVar[str] = "volume"
    _sections: ClassVar[dict[str, str]] = {
        "host": "host: {source: /path/on/host}", "text": "text: {data: ...}",
    }
    _belongs_to_type = field_validator("host", "text", mode="before")(section_belongs_to_type)


PortNumber = Annotated[int, Field(ge=1, le=65535)]


class HostPort(Strict):
    port: PortNumber


class ServicePort(Strict):
    port: PortNumber
    exposed_port: PortNumber | None = None
    exposed: bool = False


class Port(TypedSections):
    """A port on the host (``host.port``) or a service for other containers (``service``)."""

    name: Annotated[str, Field(pattern=DNS_NAME, max_length=15)]
    type: Literal["host", "service"]
    host: HostPort | None = None
    service: ServicePort | None = None

    _what: ClassVar[str] = "port"
    _sections: ClassVar[dict[str, str]] = {
        "host": "host: {port: 80}", "service": "service: {port: 8080}",
    }
    _belongs_to_type = field_validator("host", "service", mode="before")(section_belongs_to_type)

    @property
    def container_port(self) -> int:
        section = self.host if self.type == "host" else self.service
        assert section is not None
        return section.port


class Amounts(Strict):
    cpu: CpuQuantity | None = None
    memory: MemoryQuantity | None = None


class Resources(Strict):
    """Kubernetes-style ``requests`` (reserved) and ``limits`` (maximum)."""

    requests: Amounts = Field(default_factory=Amounts)
    limits: Amounts = Field(default_factory=Amounts)

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for kind in ("cpu", "memory"):
            request, limit = getattr(self.requests, kind), getattr(self.limits, kind)
            if request and limit and parse_quantity(request) > parse_quantity(limit):
                raise problem(f"{request} is more than the limit {limit}", f"requests.{kind}")
        return self


class System(Strict):
    environment_vars: list[EnvVar] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    privileged: bool = False

    @model_validator(mode="after")
    def _unique(self) -> System:
        for found in duplicate_problems(self.model_dump(mode="json")):
            raise problem(found[1], found[0])
        return self


class Defaults(Strict):
    configuration: dict[str, Any] = Field(default_factory=dict)
    system: System = Field(default_factory=System)


# -- type sections ----------------------------------------------------------------------------
class IO(Strict):
    """An importer's or exporter's IO: which data types it carries, whether it takes control."""

    name: StreamName
    data_types: list[DataType] = Field(default_factory=lambda: list(DATA_TYPES),
                                       min_length=1)
    control: bool = False


class DataStream(Strict):
    name: StreamName
    data_type: DataType
    unit: str | None = None


class DataStreams(Strict):
    inputs: list[DataStream] = Field(default_factory=list)
    outputs: list[DataStream] = Field(default_factory=list)


class ControlChanges(DataStreams):
    """Control changes an app reads (``inputs``) and sends (``outputs``)."""


class Parameter(Strict):
    """An asset parameter an app reads, with an optional default value."""

    name: StreamName
    data_type: Literal["number", "string", "boolean"]
    default: float | int | str | bool | None = None

    @model_validator(mode="after")
    def _default_matches(self) -> Parameter:
        value = self.default
        fits = {"number": isinstance(value, int | float) and not isinstance(value, bool),
                "string": isinstance(value, str), "boolean": isinstance(value, bool)}
        if value is not None and not fits[self.data_type]:
            raise problem(f"must be a {self.data_type} value", "default")
        return self


def _repeats(items: Any, where: str, key: str, what: str) -> list[tuple[str, str]]:
    """``(path, message)`` for each item of a raw list whose ``key`` repeats an earlier one.

    ``key`` may be dotted through the item's type (``@type.port``: ``host.port`` of a host port).
    """
    found: list[tuple[str, str]] = []
    seen: dict[Any, int] = {}
    for index, item in enumerate(items if isinstance(items, list) else []):
        kind = item.get("type") if isinstance(item, dict) else None
        path, value = key.replace("@type", str(kind)), item
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str | int) or isinstance(value, bool):
            continue
        if value in seen:
            found.append((f"{where}[{index}].{path}",
                          f"duplicate {what} '{value}' (also {where.rsplit('.', 1)[-1]}"
                          f"[{seen[value]}])"))
        else:
            seen[value] = index
    return found


def duplicate_problems(system: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(path, message)`` for repeated names, targets and ports in raw ``defaults.system``."""
    if not isinstance(system, dict):
        return []
    checks = (("environment_vars", "name", "environment variable"),
              ("volumes", "name", "volume name"), ("volumes", "target", "volume target"),
              ("ports", "name", "port name"), ("ports", "@type.port", "port"))
    return [found for section, key, what in checks
            for found in _repeats(system.get(section), prefix + section, key, what)]


def list_duplicates(items: Any, where: str) -> list[tuple[str, str]]:
    """``(path, message)`` for repeated ``name`` keys in a raw list of mappings."""
    return _repeats(items, where, "name", "name")


_DECIMAL_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9,
                   "T": 10**12, "P": 10**15, "E": 10**18}
_BINARY_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity (``100m`` → 0.1, ``256Mi`` → 268435456)."""
    match = re.fullmatch(r"(\d*\.?\d+)([a-zA-Z]*)(\d*)", text)
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix, exponent = Decimal(match.group(1)), match.group(2), match.group(3)
    if suffix in ("e", "E") and exponent:
        return number * Decimal(10) ** int(exponent)
    if suffix in _BINARY_SUFFIX:
        return number * _BINARY_SUFFIX[suffix]
    if suffix in _DECIMAL_SUFFIX and not exponent:
        return number * _DECIMAL_SUFFIX[suffix]
    raise ValueError(f"not a quantity: {text!r}")


class ManifestModel(Strict):
    """The fields of app.yaml; :class:`lakeport.apps.manifest.Manifest` adds behaviour."""

    spec_version: SpecVersion
    type: AppType
    name: DnsName
    title: str = ""
    description: str = Field(default="", max_length=256)
    version: Version
    category: str | None = None
    flags: Flags = Field(default_factory=Flags)
    ui_schemas: UiSchemas = Field(default_factory=UiSchemas)
    defaults: Defaults = Field(default_factory=Defaults)
    exporter_io: list[IO] = Field(default_factory=list)
    importer_io: list[IO] = Field(default_factory=list)
    data_streams: DataStreams = Field(default_factory=DataStreams)
    control_changes: ControlChanges = Field(default_factory=ControlChanges)
    parameters: list[Parameter] = Field(default_factory=list)

    @field_validator("spec_version")
    @classmethod
    def _supported_spec(cls, value: str) -> str:
        match = re.match(SPEC_VERSION, value)
        if match and int(match.group(1)) != SPEC_MAJOR:
            raise problem(f"{value} is not supported: this lakeport reads spec_version "
                          f"{SPEC_MAJOR} (such as {SPEC_MAJOR}.0.0)")
        return value

    @field_validator(*ALL_SECTIONS, mode="before")
    @classmethod
    def _section_of_type(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if kind is not None and info.field_name not in TYPE_SECTIONS[kind]:
            raise problem(f"not allowed for type {kind}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ManifestModel:
        for path, message in section_problems(self.model_dump(mode="json"), self.type):
            raise problem(message, path)
        return self


def section_problems(data: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """``(path, message)``: a required section missing, repeated names inside sections."""
    found: list[tuple[str, str]] = []
    required = REQUIRED_SECTIONS.get(kind)
    if required and not data.get(required):
        found.append((required, f"required for type {kind}: list at least one IO "
                                "(- name: default)"))
    found.extend(list_duplicates(data.get(required or ""), required or ""))
    if kind == "app":
        for section in ("data_streams", "control_changes"):
            streams = data.get(section)
            if isinstance(streams, dict):
                for side in ("inputs", "outputs"):
                    found.extend(list_duplicates(streams.get(side), f"{section}.{side}"))
        found.extend(list_duplicates(data.get("parameters"), "parameters"))
    return found


# -- pydantic errors as one-line problems ---------------------------------------------------------
_TYPE_MESSAGES = {
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "none_required": "must be empty",
}
_HINTS = {
    ("volumes", "source"): "a host volume takes host: {source: ...}",
    ("volumes", "data"): "a text volume takes text: {data: ...}",
    ("ports", "port"): "a host port takes host: {port: ...}, a service port service: {port: ...}",
    ("ports", "exposed_port"): "a service port takes service: {port: ..., exposed_port: ...}",
}


def validation_problems(exc: ValidationError) -> list[str]:
    """One ``path: message`` line per error of ``exc``, paths like ``volumes[1].type``."""
    return [_problem(error) for error in exc.errors(include_url=False)]


def _problem(error: Any) -> str:
    loc = list(error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    value = error.get("input")
    if kind == "lakeport":
        path = _loc_path(loc)
        at = ctx.get("at", "")
        if at:
            path = f"{path}{'' if at.startswith('[') or not path else '.'}{at}"
        return f"{path or 'app.yaml'}: {ctx['message']}"
    path = _loc_path(loc) or "app.yaml"
    if kind == "extra_forbidden":
        return f"{path}: unknown key{_unknown_key_hint(loc)}"
    if kind == "literal_error":
        choices = ", ".join(re.findall(r"'([^']*)'", ctx.get("expected", "")))
        return f"{path}: must be one of {choices}{_got(value)}"
    if kind == "string_pattern_mismatch":
        message = PATTERN_MESSAGES.get(ctx.get("pattern"), f"must match {ctx.get('pattern')}")
        if isinstance(value, str) and value.endswith("m") and loc[-1] == "memory":
            return f"{path}: {message} ('{value}' would mean millibytes: write {value[:-1]}Mi)"
        return f"{path}: {message}{_got(value)}"
    if kind == "string_too_long":
        return f"{path}: must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"{path}: must not be empty"
    if kind == "too_short":
        return f"{path}: must have at least {ctx.get('min_length')} item(s)"
    if kind in ("greater_than_equal", "greater_than"):
        return f"{path}: must be at least {ctx.get('ge', ctx.get('gt'))}{_got(value)}"
    if kind in ("less_than_equal", "less_than"):
        return f"{path}: must be at most {ctx.get('le', ctx.get('lt'))}{_got(value)}"
    if kind == "missing":
        return f"{path}: required"
    if kind in _TYPE_MESSAGES:
        return f"{path}: {_TYPE_MESSAGES[kind]}{_got(value)}"
    if kind == "value_error":
        return f"{path}: {ctx.get('error', error['msg'])!s}"
    return f"{path}: {error['msg'][:1].lower()}{error['msg'][1:]}"


def _loc_path(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _got(value: Any) -> str:
    """`` (got 'integer')`` for a scalar input, `` (got a list)`` for a collection."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return f" (got a {kind_of(value)})"
    if isinstance(value, bool):
        shown = "true" if value else "false"
    else:
        shown = repr(value) if isinstance(value, str) else str(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f" (got {shown})"


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "mapping", list: "list", str: "text", bool: "boolean", int: "number",
            float: "number"}.get(type(value), type(value).__name__)


def _unknown_key_hint(loc: Sequence[Any]) -> str:
    key = loc[-1]
    parent = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), None)
    hint = _HINTS.get((parent, key)) if parent else None
    if hint:
        return f" ({hint})"
    known = _known_keys(loc[:-1])
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _known_keys(parent_loc: Sequence[Any]) -> list[str]:
    """The keys allowed at ``parent_loc`` (for did-you-mean hints on unknown keys)."""
    model: Any = ManifestModel
    for part in parent_loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model in ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
