"""The runtime manifest a vendor-SDK app gets first: its assets, datastreams, configuration.

The assets come from ``--asset NAME`` (repeatable) or a deployment file (``--deployment``)::

    assets:
      - name: pump-01
        parameters: {speed_limit: 80}     # the app's parameters (app.yaml ``parameters``)
        properties: {area: 11.5}          # free-form asset properties
        datastreams: [temperature]        # optional: only these of the app's datastreams

Without either, the app gets the simulator's assets ``asset-01`` … ``asset-10`` and every
further asset that shows up on its topics is added (an updated runtime manifest is sent
before that asset's first message). With explicit assets, messages of other assets are
skipped (acked, not delivered), as the vendor's runtime routes only assigned assets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from lakeport.apps.kelvin.wire import app_krn, asset_krn, timestamp
from lakeport.errors import Invalid, NotFound

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest

SIMULATOR_ASSETS = tuple(f"asset-{index:02d}" for index in range(1, 11))
ParameterValue = StrictBool | StrictInt | StrictFloat | StrictStr


class DeploymentAsset(BaseModel):
    """One asset the app is deployed to."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    datastreams: list[str] | None = None


class Deployment(BaseModel):
    """A deployment file: the assets (with parameters and properties) of one app."""

    model_config = ConfigDict(extra="forbid")
    assets: list[DeploymentAsset] = Field(min_length=1)


def load_deployment(path: str | Path) -> Deployment:
    """The deployment in a YAML (or JSON) file; Invalid naming the file and key otherwise."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"--deployment {path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise Invalid(f"--deployment {path}: cannot read it ({exc})") from None
    try:
        return Deployment.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise Invalid(f"--deployment {path}: {where}: {first['msg']}") from None


@dataclass(frozen=True)
class Stream:
    """A datastream of the app: its data type, unit and way (the vendor's ``way``)."""

    name: str
    data_type: str
    unit: str | None
    way: str


_COMBINED_WAYS = {frozenset({"input", "output-cc"}): "input+output-cc",
                  frozenset({"input-cc", "output"}): "input-cc+output"}


def app_streams(manifest: Manifest) -> dict[str, Stream]:
    """Every datastream the app reads or writes, by name, with its way."""
    ways: dict[str, list[str]] = {}
    kinds: dict[str, tuple[str, str | None]] = {}

    def add(name: str, data_type: str, unit: str | None, way: str) -> None:
        ways.setdefault(name, []).append(way)
        kinds.setdefault(name, (data_type, unit))

    if manifest.type == "app":
        for way, streams in (("input", manifest.data_streams.inputs),
                             ("output", manifest.data_streams.outputs),
                             ("input-cc", manifest.control_changes.inputs),
                             ("output-cc", manifest.control_changes.outputs)):
            for stream in streams:
                add(stream.name, stream.data_type, stream.unit, way)
    elif manifest.type == "importer":
        for io in manifest.importer_io:
            add(io.name, io.data_types[0], None, "input-cc+output" if io.control else "output")
    result = {}
    for name, found in ways.items():
        unique = list(dict.fromkeys(found))
        way = unique[0] if len(unique) == 1 else _COMBINED_WAYS.get(frozenset(unique), unique[0])
        data_type, unit = kinds[name]
        result[name] = Stream(name, data_type, unit, way)
    return result


def declared_custom_actions(manifest: Manifest) -> dict[str, list[str]]:
    """``{"inputs": [type, ...], "outputs": [...]}`` from the manifest's ``custom_actions``."""
    section: Any = getattr(manifest, "custom_actions", None)
    if section is None:  # a manifest model without the key: read the file itself
        try:
            raw = yaml.safe_load((manifest.folder / "app.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            raw = None
        section = raw.get("custom_actions") if isinstance(raw, dict) else None
    if isinstance(section, BaseModel):
        section = section.model_dump(mode="json")
    result: dict[str, list[str]] = {"inputs": [], "outputs": []}
    if not isinstance(section, dict):
        return result
    for way in result:
        for item in section.get(way) or []:
            kind = item.get("type") if isinstance(item, dict) else item
            if isinstance(kind, str) and kind:
                result[way].append(kind)
    return result


@dataclass
class RuntimeManifest:
    """What the app is told about itself; ``message()`` is the stream message to send."""

    manifest: Manifest
    configuration: dict[str, Any]
    assets: list[DeploymentAsset]
    open_assets: bool = False
    streams: dict[str, Stream] = field(default_factory=dict)

    @classmethod
    def build(cls, manifest: Manifest, configuration: dict[str, Any], *,
              asset_names: list[str] | None = None,
              deployment: Deployment | None = None) -> RuntimeManifest:
        """From ``--asset`` names or a deployment; neither: the simulator's assets, open."""
        if asset_names and deployment is not None:
            raise Invalid("use either --asset or --deployment, not both")
        streams = app_streams(manifest)
        if deployment is not None:
            assets = list(deployment.assets)
        elif asset_names:
            assets = [DeploymentAsset(name=name) for name in dict.fromkeys(asset_names)]
        else:
            assets = [DeploymentAsset(name=name) for name in SIMULATOR_ASSETS]
        runtime = cls(manifest, dict(configuration), assets,
                      open_assets=not asset_names and deployment is None, streams=streams)
        runtime.check()
        return runtime

    def check(self) -> None:
        """Every asset's parameters and datastreams exist in the app, with fitting types."""
        declared = {p.name: p for p in self.manifest.parameters}
        names = set()
        for index, asset in enumerate(self.assets):
            where = f"assets[{index}] ({asset.name})"
            if asset.name in names:
                raise Invalid(f"{where}: asset listed twice")
            names.add(asset.name)
            for name, value in asset.parameters.items():
                parameter = declared.get(name)
                if parameter is None:
                    raise Invalid(f"{where}.parameters.{name}: {self.manifest.name} has no such "
                                  f"parameter (app.yaml parameters: "
                                  f"{', '.join(declared) or 'none'})")
                if _parameter_type(value) != parameter.data_type:
                    raise Invalid(f"{where}.parameters.{name}: must be a {parameter.data_type} "
                                  f"(got {value!r})")
            for name in asset.datastreams or []:
                if name not in self.streams:
                    raise Invalid(f"{where}.datastreams: {name!r} is not a datastream of "
                                  f"{self.manifest.name} ({', '.join(self.streams) or 'none'})")

    # -- questions the bridge asks ---------------------------------------------------------
    def has_asset(self, name: str) -> bool:
        return any(asset.name == name for asset in self.assets)

    def admit(self, name: str) -> bool | None:
        """Whether the app takes messages of asset ``name``: True (known), None (just
        added: send the runtime manifest again), False (not one of its assets)."""
        if self.has_asset(name):
            return True
        if not self.open_assets:
            return False
        self.assets.append(DeploymentAsset(name=name))
        return None

    def control_as_data(self) -> dict[str, str] | None:
        """Datastreams whose control changes an app gets as data (None: importers get
        control messages)."""
        if self.manifest.type == "importer":
            return None
        return {s.name: s.data_type for s in self.manifest.control_changes.inputs}

    def output_units(self) -> dict[str, str]:
        return {s.name: s.unit for s in self.streams.values() if s.unit}

    @property
    def app_resource(self) -> str:
        return app_krn(self.manifest.name, self.manifest.version)

    def custom_actions(self) -> list[dict[str, str]]:
        declared = declared_custom_actions(self.manifest)
        return ([{"type": t, "way": "input-ca"} for t in declared["inputs"]]
                + [{"type": t, "way": "output-ca"} for t in declared["outputs"]])

    # -- the message -----------------------------------------------------------------------
    def message(self) -> dict[str, Any]:
        """The ``runtime_manifest`` stream message."""
        defaults = parameter_defaults(self.manifest)
        resources = []
        for asset in self.assets:
            wanted = self.streams if asset.datastreams is None else {
                name: self.streams[name] for name in asset.datastreams}
            parameters = {name: (float(value) if self._is_number(name) else value)
                          for name, value in {**defaults, **asset.parameters}.items()}
            resources.append({
                "resource": asset_krn(asset.name),
                "parameters": parameters,
                "properties": asset.properties,
                "datastreams": {name: {"map_to": name, "way": stream.way}
                                for name, stream in wanted.items()},
            })
        datastreams = []
        for stream in self.streams.values():
            described = {"name": stream.name, "data_type_name": stream.data_type,
                         "primitive_type_name": stream.data_type}
            if stream.unit:
                described["unit_name"] = stream.unit
            datastreams.append(described)
        return {
            "type": "runtime_manifest", "resource": self.app_resource, "id": str(uuid.uuid4()),
            "timestamp": timestamp(datetime.now(UTC)),
            "payload": {"resources": resources, "configuration": self.configuration,
                        "datastreams": datastreams, "custom_actions": self.custom_actions()},
        }

    def _is_number(self, parameter: str) -> bool:
        return any(p.name == parameter and p.data_type == "number"
                   for p in self.manifest.parameters)


def parameter_defaults(manifest: Manifest) -> dict[str, Any]:
    """Each parameter's default: ``defaults.parameters`` (or a ``default`` on the parameter)."""
    found = {p.name: p.default for p in manifest.parameters
             if getattr(p, "default", None) is not None}
    found.update(getattr(manifest.defaults, "parameters", None) or {})
    return found


def _parameter_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"
