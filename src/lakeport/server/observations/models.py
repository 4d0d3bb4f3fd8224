"""Request bodies of the resource routes (validated by pydantic; unknown keys are errors)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from lakeport.readings import DataType

NAME_PATTERN = r"^[A-Za-z0-9+_=:@.\-]{1,200}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=200)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
_INT_RANGE = (-(2**63), 2**63 - 1)


def _json_numbers(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """``value`` when every number in it (at any depth) is finite and every integer fits 64
    bits: JSON cannot hold NaN or Infinity (Python's parser reads them, and 1e400 as inf)."""
    stack: list[tuple[str, Any]] = [(info.field_name or "value", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed([(f"{path}[{key!r}]", child) for key, child in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{path}[{index}]", child)
                                   for index, child in enumerate(item)]))
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{path}: {item} is not a finite number")
        elif type(item) is int and not _INT_RANGE[0] <= item <= _INT_RANGE[1]:
            raise ValueError(f"{path}: {item} is out of range (64-bit integers)")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_numbers)]
"""A JSON object of free-form fields whose numbers JSON can hold."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Point(_Body):
    """A GeoJSON Point: ``{"type": "Point", "coordinates": [lon, lat(, alt)]}`` (WGS 84)."""

    type: Literal["Point"]
    coordinates: list[float] = Field(min_length=2, max_length=3)

    @field_validator("coordinates")
    @classmethod
    def _in_range(cls, value: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in value):
            raise ValueError("coordinates must be finite numbers")
        if not -180 <= value[0] <= 180:
            raise ValueError(f"longitude {value[0]} is outside -180..180")
        if not -90 <= value[1] <= 90:
            raise ValueError(f"latitude {value[1]} is outside -90..90")
        return value


class FeatureIn(_Body):
    name: Name
    description: Text = Field(default="", max_length=10_000)
    geometry: Point | None = None
    parent: Name | None = None
    properties: JsonObject = Field(default_factory=dict)


class FeaturePatch(_Body):
    description: Text | None = Field(default=None, max_length=10_000)
    geometry: Point | None = None
    parent: Name | None = None
    properties: JsonObject | None = None


class SensorIn(_Body):
    name: Name
    description: Text = Field(default="", max_length=10_000)
    kind: Literal["atomic", "composite"] = "atomic"
    components: list[Name] = Field(default_factory=list, max_length=1000)
    metadata: JsonObject = Field(default_factory=dict)


class SensorPatch(_Body):
    description: Text | None = Field(default=None, max_length=10_000)
    kind: Literal["atomic", "composite"] | None = None
    components: list[Name] | None = Field(default=None, max_length=1000)
    metadata: JsonObject | None = None


class PropertyIn(_Body):
    name: Name
    unit: Text = Field(default="", max_length=100)
    data_type: DataType = "number"
    description: Text = Field(default="", max_length=10_000)


class PropertyPatch(_Body):
    unit: Text | None = Field(default=None, max_length=100)
    data_type: DataType | None = None
    description: Text | None = Field(default=None, max_length=10_000)


__all__ = [
    "NAME_PATTERN",
    "DataType",
    "FeatureIn",
    "FeaturePatch",
    "JsonObject",
    "Name",
    "Point",
    "PropertyIn",
    "PropertyPatch",
    "SensorIn",
    "SensorPatch",
    "Text",
]
