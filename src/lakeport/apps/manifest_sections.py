"""The sections of an ``app.yaml`` (spec_version 5) that the vendor's model reads.

Each model has the keys, defaults and checks of the vendor's v5 models (``kelvin.config``:
``SmartAppConfig``, ``ImporterConfig``, ``ExporterConfig``, ``ExternalConfig``). Like the
vendor's, they ignore keys they do not know; :mod:`lakeport.apps.manifest_models` reports those
as warnings. ``defaults.system`` is lakeport's stricter model (:mod:`.manifest_system`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakeport.apps.manifest_system import TYPE_NAME, System, problem

PRIMITIVE_TYPES = ("number", "string", "boolean")
TypeName = Annotated[str, Field(pattern=TYPE_NAME)]


class Section(BaseModel):
    """A part of app.yaml the vendor reads: unknown keys are left to the warnings."""

    model_config = ConfigDict(extra="ignore")


def _field(description: str, **kwargs: Any) -> Any:
    return Field(description=description, **kwargs)


# -- flags and ui_schemas ---------------------------------------------------------------------
class RuntimeUpdate(Section):
    """What may change while the app runs (otherwise a change is refused)."""

    configuration: bool = _field("The configuration may change while the app runs.",
                                 default=False)
    parameters: bool = _field("Type app: asset parameters may change while the app runs.",
                              default=True)
    resource_properties: bool = _field("Type app: asset properties may change while the app "
                                       "runs.", default=True)


class Flags(Section):
    enable_runtime_update: RuntimeUpdate = _field(
        "What may be updated while the app runs.", default_factory=RuntimeUpdate)
    resources_required: bool | None = _field(
        "Types importer and exporter: whether a deployment must name assets (the platform's "
        "default when not given; type app always requires them).", default=None)


class UiSchemas(Section):
    """Paths (relative to the app folder) of JSON Schema files."""

    configuration: str | None = _field("JSON Schema of defaults.configuration.", default=None)
    parameters: str | None = _field("Type app: JSON Schema of the asset parameters.",
                                    default=None)
    io_configuration: dict[str, str] = _field(
        "Types importer and exporter: IO name → JSON Schema of that IO's configuration.",
        default_factory=dict)
    custom_actions: dict[str, str] = _field(
        "Custom action type → JSON Schema of its payload; each must be a declared custom "
        "action type.", default_factory=dict)


# -- IOs, data streams, parameters ----------------------------------------------------------------
def primitive_type(data_type: str) -> str:
    """``number``, ``string`` or ``boolean``; ``object`` for ``object`` and every object type
    name (``camera-image``, ``dynacard``)."""
    return data_type if data_type in PRIMITIVE_TYPES else "object"


class IO(Section):
    """An importer's or exporter's IO: which data types it carries, whether it takes control."""

    name: str = _field("The IO's name.")
    data_types: list[str] = _field(
        "Data types it carries: number, string, boolean, object, or an object type name "
        "(camera-image).", default_factory=lambda: list(PRIMITIVE_TYPES))
    control: bool = _field("Type importer: the IO also takes control changes.", default=False)


class DataStream(Section):
    name: str = _field("The data stream's name.")
    data_type: str = _field("number, string, boolean, object, or an object type name "
                            "(camera-image, dynacard).")
    unit: str | None = _field("The unit of its values.", default=None)

    @property
    def primitive_type(self) -> str:
        """The message type it travels as: ``object`` for object type names."""
        return primitive_type(self.data_type)


class DataStreams(Section):
    inputs: list[DataStream] = _field("Data streams the app reads.", default_factory=list)
    outputs: list[DataStream] = _field("Data streams the app writes.", default_factory=list)


class ControlChanges(Section):
    """Control changes an app reads (``inputs``) and sends (``outputs``)."""

    inputs: list[DataStream] = _field("Control changes the app receives.",
                                      default_factory=list)
    outputs: list[DataStream] = _field("Control changes the app sends.", default_factory=list)


class Parameter(Section):
    """An asset parameter an app reads; its default value is in ``defaults.parameters``."""

    name: str = _field("The parameter's name.")
    data_type: Literal["number", "string", "boolean"] = _field("number, string or boolean.")


# -- custom actions, data quality, data tags, recommendations ------------------------------------
class CustomAction(Section):
    type: TypeName = _field("The custom action type (letters, digits, '-', '_', '.', spaces).")


class CustomActions(Section):
    inputs: list[CustomAction] = _field("Custom actions the app executes.",
                                        default_factory=list)
    outputs: list[CustomAction] = _field("Custom actions the app creates.",
                                         default_factory=list)


class DataQualityItem(Section):
    name: str = _field("The data quality metric's name (outputs must not start with kelvin_).")
    data_type: str = _field("The metric's data type.")
    type: Literal["asset", "asset-datastream"] | None = _field(
        "What it is about: asset, or asset-datastream (the default when data_streams is given).",
        default=None)
    data_streams: list[str] = _field("The data streams it is about (type asset-datastream).",
                                     default_factory=list)


class DataQuality(Section):
    inputs: list[DataQualityItem] = _field("Data quality metrics the app reads.",
                                           default_factory=list)
    outputs: list[DataQualityItem] = _field("Data quality metrics the app computes.",
                                            default_factory=list)


class DataTags(Section):
    inputs: list[str] = _field("Data tag names the app reads.", default_factory=list)
    outputs: list[str] = _field("Data tag names the app creates.", default_factory=list)


class Recommendation(Section):
    type: TypeName = _field("The recommendation type.")


class Recommendations(Section):
    outputs: list[Recommendation] = _field("Recommendation types the app publishes.",
                                           default_factory=list)


# -- defaults -------------------------------------------------------------------------------------
class DatastreamMapping(Section):
    app: str = _field("An input or output of the app.")
    datastream: str = _field("The platform data stream it maps to.")


class Defaults(Section):
    configuration: dict[str, Any] = _field(
        "The app's configuration (checked against ui_schemas.configuration).",
        default_factory=dict)
    system: System = _field("Environment variables, volumes, ports, resources, privileged.",
                            default_factory=System)
    parameters: dict[str, bool | int | float | str] = _field(
        "Type app: the default value of each parameter, by name.", default_factory=dict)
    datastream_mapping: list[DatastreamMapping] = _field(
        "Type app: which platform data stream each app input or output maps to.",
        default_factory=list)

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameter_values(cls, values: Any) -> Any:
        """A number, text or true/false each, taken as it is (the vendor's strict types)."""
        if isinstance(values, dict):
            for name, value in values.items():
                if not isinstance(value, bool | int | float | str):
                    raise problem("must be a number, text, true or false", str(name))
        return values
