"""Load and check an app's ``app.yaml`` manifest.

:func:`load_manifest` returns a :class:`Manifest` or raises :class:`ManifestError` listing
every problem as ``"<path>: <message>"`` (``defaults.system.volumes[1].type: must be one of
persistent, host, text``). :func:`check_app` adds what depends on the app folder and the
machine: the configuration against its JSON Schema, ui_schemas files, missing secrets.

The keys and defaults are the vendor's v5 model's (:mod:`.manifest_models`). Keys the vendor
ignores are warnings, not problems: ``manifest.warnings`` and :func:`inspect_app` name each
(``colour: not used (the vendor's format ignores it)``). A spec_version 4 file is one problem
that says how to move to version 5.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import PrivateAttr, ValidationError

from lakeport.apps.manifest_models import (
    ALL_SECTIONS,
    IO,
    TYPE_SECTIONS,
    ControlChanges,
    DataStream,
    DataStreams,
    EnvVar,
    ManifestModel,
    Parameter,
    Port,
    Resources,
    Volume,
    conversion_problems,
    duplicate_problems,
    kind_of,
    old_format_problem,
    primitive_type,
    soft_warnings,
    split_unused,
    validation_problems,
)
from lakeport.apps.messages import (
    ASSET_DATA,
    CONTROL_CHANGES,
    AppMessage,
    ControlChange,
    DataMessage,
    topic_name,
)
from lakeport.apps.secrets import (
    MASK,
    SecretStore,
    missing_secret_message,
    secret_name_problem,
    secret_refs,
)
from lakeport.errors import Invalid
from lakeport.readings import DATA_TYPES
from lakeport.yamlfile import UniqueKeyLoader, yaml_problem

MANIFEST_FILE = "app.yaml"


class ManifestError(Invalid):
    """An app.yaml with problems; ``.problems`` holds one ``"<path>: <message>"`` line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Subscription:
    """What an app reads from one topic: some data streams and/or data types, or everything."""

    topic: str
    datastreams: tuple[str, ...] | None = None
    data_types: tuple[str, ...] | None = None

    def accepts(self, message: AppMessage) -> bool:
        """Whether ``message`` (read from ``self.topic``) is one the app asked for."""
        if topic_name(message.topic) != self.topic:
            return False
        if not isinstance(message, DataMessage | ControlChange):
            return self.datastreams is None and self.data_types is None
        if self.datastreams is not None and message.datastream not in self.datastreams:
            return False
        return self.data_types is None or _data_type(message) in self.data_types


def _data_type(message: DataMessage | ControlChange) -> str:
    if isinstance(message, DataMessage):
        return message.type
    value = message.value
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "number"


class Manifest(ManifestModel):
    """A validated app.yaml (spec_version 5); ``folder`` is the app folder it came from."""

    _folder: Path = PrivateAttr(default_factory=Path.cwd)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def warnings(self) -> list[str]:
        """What the app.yaml has that is not used (``path: why``), from :func:`load_manifest`."""
        return self._warnings

    # Shortcuts to defaults.system.
    @property
    def environment_vars(self) -> list[EnvVar]:
        return self.defaults.system.environment_vars

    @property
    def volumes(self) -> list[Volume]:
        return self.defaults.system.volumes

    @property
    def ports(self) -> list[Port]:
        return self.defaults.system.ports

    @property
    def resources(self) -> Resources:
        return self.defaults.system.resources

    @property
    def privileged(self) -> bool:
        return self.defaults.system.privileged

    def subscriptions(self) -> list[Subscription]:
        """The topics the app reads, and which messages on them, by the topic convention."""
        if self.type == "app":
            found = []
            if self.data_streams.inputs:
                found.append(Subscription(topic_name(ASSET_DATA),
                                          tuple(s.name for s in self.data_streams.inputs)))
            if self.control_changes.inputs:
                found.append(Subscription(topic_name(CONTROL_CHANGES),
                                          tuple(s.name for s in self.control_changes.inputs)))
            return found
        if self.type == "exporter":
            return [Subscription(topic_name(ASSET_DATA), None, _union(self.exporter_io))]
        if self.type == "importer":
            controlled = [io for io in self.importer_io if io.control]
            if controlled:
                return [Subscription(topic_name(CONTROL_CHANGES), None, _union(controlled))]
        return []

    def configuration_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of ``ui_schemas.configuration``, or None when there is none."""
        if self.ui_schemas.configuration is None:
            return None
        schema, problem = _read_json_schema(self.folder, self.ui_schemas.configuration,
                                            "ui_schemas.configuration")
        if problem:
            raise ManifestError([problem])
        return schema

    def validate_configuration(self, configuration: dict[str, Any],
                               where: str = "configuration") -> list[str]:
        """Problems of ``configuration`` against ``ui_schemas.configuration``, one
        ``<where>.<path>: <message>`` line each."""
        if self.ui_schemas.configuration is None:
            return []
        schema, problem = _read_json_schema(self.folder, self.ui_schemas.configuration,
                                            "ui_schemas.configuration")
        if problem:
            return [problem]
        return schema_problems(schema, configuration, where)

    def secret_refs(self) -> list[str]:
        """Every secret referenced in ``defaults`` (environment variables, configuration)."""
        return list(dict.fromkeys(name for _, name in _refs_in(
            self.defaults.model_dump(mode="json"), "defaults")))

    def resolved(self, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
        """The manifest as a document with defaults filled in, the given ``configuration``
        in place of ``defaults.configuration``, sections of other types left out and every
        secret reference masked as ``***``."""
        data = self.model_dump(mode="json", exclude_none=True)
        for section in ALL_SECTIONS:
            if section not in TYPE_SECTIONS[self.type]:
                data.pop(section, None)
        data, _ = split_unused(data)
        if configuration is not None:
            data["defaults"]["configuration"] = copy.deepcopy(configuration)
        return _mask(data)


def _union(ios: Iterable[IO]) -> tuple[str, ...]:
    wanted = {primitive_type(data_type) for io in ios for data_type in io.data_types}
    return tuple(t for t in DATA_TYPES if t in wanted)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item) for item in value]
    if isinstance(value, str) and secret_refs(value):
        return MASK
    return value


# -- reading app.yaml ---------------------------------------------------------------------------
def manifest_file(path: str | Path) -> Path:
    """The app.yaml of ``path`` (an app folder or the file itself)."""
    path = Path(path)
    return path / MANIFEST_FILE if path.is_dir() else path


def read_document(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The app.yaml file of ``path`` and its YAML content; ManifestError if unreadable."""
    file = manifest_file(path)
    label = file.name
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        where = f"{path} has no {MANIFEST_FILE}" if Path(path).is_dir() else f"{path}"
        raise ManifestError([f"{where}: not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"{label}: cannot be read ({exc})"]) from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader
    except yaml.MarkedYAMLError as exc:
        raise ManifestError([yaml_problem(label, exc)]) from None
    except yaml.YAMLError as exc:
        raise ManifestError([f"{label}: not valid YAML ({exc})"]) from None
    if data is None:
        raise ManifestError([f"{label}: is empty (it needs spec_version, type, name and "
                             "version)"])
    if not isinstance(data, dict):
        raise ManifestError([f"{label}: must be a mapping of keys (spec_version, type, name, "
                             f"...), not a {kind_of(data)}"])
    return file, data


def load_manifest(path: str | Path) -> Manifest:
    """The validated manifest of an app folder or app.yaml file; ManifestError lists problems.

    ``manifest.warnings`` names what the app.yaml has that is not used."""
    file, data = read_document(path)
    manifest, problems, warnings = _validate(data)
    if problems:
        raise ManifestError(problems)
    assert manifest is not None
    manifest._folder = file.parent.resolve()
    manifest._warnings = warnings
    return manifest


def _validate(data: dict[str, Any]) -> tuple[Manifest | None, list[str], list[str]]:
    """The manifest of ``data``, every structural problem (schema, repeated names, what the
    vendor refuses) and every warning (keys the vendor ignores)."""
    old = old_format_problem(data)
    if old is not None:
        return None, [old], []
    used, warnings = split_unused(data)
    problems: list[str] = []
    manifest = None
    try:
        manifest = Manifest.model_validate(used)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, ManifestModel))
    defaults = data.get("defaults")
    system = defaults.get("system") if isinstance(defaults, dict) else None
    extra = duplicate_problems(system, "defaults.system.")
    if manifest is not None:
        extra += conversion_problems(manifest)
        warnings += soft_warnings(data, manifest)
    problems.extend(f"{path}: {message}" for path, message in extra)
    return ((manifest if not problems else None), list(dict.fromkeys(problems)),
            list(dict.fromkeys(warnings)))


@dataclass(frozen=True)
class AppCheck:
    """What :func:`inspect_app` found: ``problems`` refuse the app, ``warnings`` do not."""

    problems: list[str]
    warnings: list[str]


def check_app(path: str | Path, *, configuration: dict[str, Any] | None = None,
              secrets: SecretStore | None = None, check_secrets: bool = True) -> list[str]:
    """Every problem of the app at ``path`` (see :func:`inspect_app`)."""
    return inspect_app(path, configuration=configuration, secrets=secrets,
                       check_secrets=check_secrets).problems


def inspect_app(path: str | Path, *, configuration: dict[str, Any] | None = None,
                secrets: SecretStore | None = None, check_secrets: bool = True) -> AppCheck:
    """Every problem of the app at ``path``: YAML, schema, repeated names, ui_schemas files,
    the configuration (``configuration`` replaces ``defaults.configuration`` when given)
    against ``ui_schemas.configuration``, and secrets missing from ``secrets`` (the store
    under the lakeport home by default); and every warning (keys the vendor ignores)."""
    try:
        file, data = read_document(path)
    except ManifestError as exc:
        return AppCheck(exc.problems, [])
    folder = file.parent
    _, problems, warnings = _validate(data)
    if problems and old_format_problem(data) is not None:
        return AppCheck(problems, [])
    used, _ = split_unused(data)
    problems.extend(_schema_file_problems(folder, used.get("ui_schemas")))
    problems.extend(_configuration_problems(folder, used, configuration))
    if check_secrets:
        problems.extend(_secret_problems(used, configuration,
                                         secrets if secrets is not None else SecretStore()))
    return AppCheck(list(dict.fromkeys(problems)), warnings)


def _schema_file_problems(folder: Path, ui_schemas: Any) -> list[str]:
    if not isinstance(ui_schemas, dict):
        return []
    files = [(f"ui_schemas.{key}", ui_schemas.get(key)) for key in ("configuration",
                                                                     "parameters")]
    for section in ("io_configuration", "custom_actions"):
        named = ui_schemas.get(section)
        if isinstance(named, dict):
            files += [(f"ui_schemas.{section}.{k}", v) for k, v in named.items()]
    problems = []
    for where, relative in files:
        if isinstance(relative, str):
            _, problem = _read_json_schema(folder, relative, where)
            if problem:
                problems.append(problem)
    return problems


def _configuration_problems(folder: Path, data: dict[str, Any],
                            configuration: dict[str, Any] | None) -> list[str]:
    ui_schemas = data.get("ui_schemas")
    relative = ui_schemas.get("configuration") if isinstance(ui_schemas, dict) else None
    if configuration is not None:
        where = "configuration"
    else:
        defaults = data.get("defaults")
        configuration = defaults.get("configuration", {}) if isinstance(defaults, dict) else {}
        where = "defaults.configuration"
    if not isinstance(relative, str) or not isinstance(configuration, dict):
        return []
    schema, problem = _read_json_schema(folder, relative, "ui_schemas.configuration")
    if problem:
        return []  # reported with the ui_schemas files
    return schema_problems(schema, configuration, where)


def _secret_problems(data: dict[str, Any], configuration: dict[str, Any] | None,
                     store: SecretStore) -> list[str]:
    defaults = data.get("defaults")
    if not isinstance(defaults, dict):
        return []
    refs = list(_refs_in(defaults, "defaults"))
    if configuration is not None:
        refs = [ref for ref in refs if not ref[0].startswith("defaults.configuration")]
        refs += _refs_in(configuration, "configuration")
    if not refs:
        return []
    known = set(store.names())
    problems = []
    for where, name in refs:
        problem = secret_name_problem(name)
        if problem is None and name not in known:
            problem = missing_secret_message(name)
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def _refs_in(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """``(path, secret name)`` for every secret reference in a YAML/JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _refs_in(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _refs_in(item, f"{where}[{index}]")
    elif isinstance(value, str):
        for name in secret_refs(value):
            yield where, name


# -- JSON Schema files and configuration ---------------------------------------------------------
def _read_json_schema(folder: Path, relative: str,
                      where: str) -> tuple[dict[str, Any], str | None]:
    file = folder / relative
    try:
        schema = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"{where}: file {relative} does not exist"
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"{where}: cannot read {relative} ({exc})"
    except json.JSONDecodeError as exc:
        return {}, f"{where}: {relative} is not valid JSON (line {exc.lineno}, column {exc.colno})"
    if not isinstance(schema, dict):
        return {}, f"{where}: {relative} must hold a JSON object (a JSON Schema)"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        at = _json_path(exc.absolute_path)
        return {}, f"{where}: {relative} is not a valid JSON Schema ({at or 'root'}: {exc.message})"
    return schema, None


def schema_problems(schema: dict[str, Any], instance: Any, where: str) -> list[str]:
    """Every error of ``instance`` against the JSON Schema ``schema``, as ``where<path>: msg``."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    return [f"{where}{_json_path(error.absolute_path, leading_dot=True)}: {error.message}"
            for error in errors]


def _json_path(parts: Iterable[Any], leading_dot: bool = False) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return text if leading_dot else text.lstrip(".")


# -- JSON Schema of app.yaml ---------------------------------------------------------------------
def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of app.yaml (draft 2020-12), for editors and other tools.

    Keys the vendor's format ignores are allowed (lakeport warns about them), except in
    ``defaults.system``."""
    schema = Manifest.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "title": "lakeport app.yaml (spec_version 5)", **schema}
    return schema


def dump_yaml(data: Any) -> str:
    """YAML text in the order of ``data``'s keys."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


__all__ = [
    "IO",
    "MANIFEST_FILE",
    "AppCheck",
    "ControlChanges",
    "DataStream",
    "DataStreams",
    "EnvVar",
    "Manifest",
    "ManifestError",
    "Parameter",
    "Port",
    "Resources",
    "Subscription",
    "Volume",
    "check_app",
    "dump_yaml",
    "inspect_app",
    "load_manifest",
    "manifest_file",
    "manifest_json_schema",
    "read_document",
    "schema_problems",
    "validation_problems",
]
