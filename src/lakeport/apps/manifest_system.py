"""``defaults.system`` of an ``app.yaml`` manifest, and the pieces every manifest model shares.

The vendor passes ``defaults.system`` to its platform unchecked; lakeport checks it here
(environment variables, volumes, ports, resources, privileged) and refuses unknown keys.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Patterns and what to tell a user who does not match them.
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
STREAM_NAME = r"^[a-z0-9]([-_.a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# The vendor's version pattern (its ``VersionStr``): x.y.z, a pre-release, a build tag.
SEMVER = (r"^([0-9]+)\.([0-9]+)\.([0-9]+)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
          r"(?:\+[0-9A-Za-z-]+)?$")
# The vendor's custom action and recommendation type names (its ``NameV2``).
TYPE_NAME = r"^[a-zA-Z0-9]([-_ .a-zA-Z0-9]*[a-zA-Z0-9])?$"
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
    TYPE_NAME: "must be letters, digits, '-', '_', '.' and spaces, starting and ending with a "
               "letter or digit",
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

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)


# -- defaults.system --------------------------------------------------------------------------
class EnvVar(Strict):
    """An environment variable; ``value`` may hold ``<% secrets.NAME %>`` references."""

    name: Annotated[str, Field(pattern=ENV_NAME)]
    """The variable's name."""
    value: EnvValue = ""
    """Its value; may hold <% secrets.NAME %> references."""


class HostSource(Strict):
    source: str = Field(min_length=1)
    """An absolute path on the host."""

    @field_validator("source")
    @classmethod
    def _absolute(cls, source: str) -> str:
        if not source.startswith("/"):
            raise problem("must be an absolute path on the host")
        return source


class TextContent(Strict):
    data: str
    """The file's content."""
    base64: bool = False
    """data is base64-encoded."""
    encoding: str = "utf-8"
    """The text encoding of data."""


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
    """The volume's name (unique)."""
    target: str = Field(min_length=1)
    """Where it is mounted in the container."""
    type: Literal["persistent", "host", "text"]
    """persistent, host (a host path) or text (a file with the given content)."""
    host: HostSource | None = None
    """Type host: the path on the host."""
    text: TextContent | None = None
    """Type text: the file's content."""

    _what: ClassVar[str] = "volume"
    _sections: ClassVar[dict[str, str]] = {
        "host": "host: {source: /path/on/host}", "text": "text: {data: ...}",
    }
    _belongs_to_type = field_validator("host", "text", mode="before")(section_belongs_to_type)


PortNumber = Annotated[int, Field(ge=1, le=65535)]


class HostPort(Strict):
    port: PortNumber
    """The port number in the container."""


class ServicePort(Strict):
    port: PortNumber
    """The port number in the container."""
    exposed_port: PortNumber | None = None
    """The port other machines reach it on."""
    exposed: bool = False
    """Reachable from outside the node."""


class Port(TypedSections):
    """A port on the host (``host.port``) or a service for other containers (``service``)."""

    name: Annotated[str, Field(pattern=DNS_NAME, max_length=15)]
    """The port's name (at most 15 characters)."""
    type: Literal["host", "service"]
    """host (a port on the host) or service (for other containers)."""
    host: HostPort | None = None
    """Type host: the port."""
    service: ServicePort | None = None
    """Type service: the port and how it is exposed."""

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
    """CPU: 100m, 0.5, 2."""
    memory: MemoryQuantity | None = None
    """Memory: 256Mi, 1Gi, 500M."""


class Resources(Strict):
    """Kubernetes-style ``requests`` (reserved) and ``limits`` (maximum)."""

    requests: Amounts = Field(default_factory=Amounts)
    """Reserved for the app."""
    limits: Amounts = Field(default_factory=Amounts)
    """The most the app may use."""

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for kind in ("cpu", "memory"):
            request, limit = getattr(self.requests, kind), getattr(self.limits, kind)
            if request and limit and parse_quantity(request) > parse_quantity(limit):
                raise problem(f"{request} is more than the limit {limit}", f"requests.{kind}")
        return self


class System(Strict):
    environment_vars: list[EnvVar] = Field(default_factory=list)
    """Environment variables of the container."""
    volumes: list[Volume] = Field(default_factory=list)
    """Volumes mounted in the container."""
    ports: list[Port] = Field(default_factory=list)
    """Ports the container listens on."""
    resources: Resources = Field(default_factory=Resources)
    """CPU and memory requests and limits."""
    privileged: bool = False
    """Run the container privileged."""

    @model_validator(mode="after")
    def _unique(self) -> System:
        for found in duplicate_problems(self.model_dump(mode="json")):
            raise problem(found[1], found[0])
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

