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
    field_validator,
)

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
DataType = Literal["number", "string", "boolean", "object"]


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
    properties: dict[str, Any] = Field(default_factory=dict)


class FeaturePatch(_Body):
    description: Text | None = Field(default=None, max_length=10_000)
    geometry: Point | None = None
    parent: Name | None = None
    properties: dict[str, Any] | None = None


class SensorIn(_Body):
    name: Name
    description: Text = Field(default="", max_length=10_000)
    kind: Literal["atomic", "composite"] = "atomic"
    components: list[Name] = Field(default_factory=list, max_length=1000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class SensorPatch(_Body):
    description: Text | None = Field(default=None, max_length=10_000)
    kind: Literal["atomic", "composite"] | None = None
    components: list[Name] | None = Field(default=None, max_length=1000)
    metadata: dict[str, Any] | None = None


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
    "Name",
    "Point",
    "PropertyIn",
    "PropertyPatch",
    "SensorIn",
    "SensorPatch",
    "Text",
]
