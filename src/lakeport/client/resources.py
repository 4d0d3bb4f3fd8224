"""Features of interest, sensors and observed properties: create, read, update, delete, list."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from lakeport.client import paging
from lakeport.client.http import Http
from lakeport.client.results import Page, ResultFormat, check_format, shape
from lakeport.client.transfer import quote_segment

Point = tuple[float, float] | tuple[float, float, float]


def _fields(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class Resources:
    """One kind of named resource under ``/<kind>`` (names are unique per kind)."""

    kind = ""
    columns: tuple[str, ...] = ()

    def __init__(self, http: Http) -> None:
        self._http = http

    def _path(self, name: str | None = None) -> str:
        return f"/{self.kind}" if name is None else f"/{self.kind}/{quote_segment(name)}"

    async def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._http.json("POST", self._path(), json=body)

    async def get(self, name: str, *, format: ResultFormat = "json") -> Any:
        """One resource by name (NotFound when there is none)."""
        check_format(format)
        return shape(await self._http.json("GET", self._path(name)), format)

    async def update(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change some fields (the others stay); only the owner may."""
        return await self._http.json("PATCH", self._path(name), json=changes)

    async def delete(self, name: str) -> None:
        """Delete a resource (Conflict while children or observations refer to it)."""
        await self._http.request("DELETE", self._path(name))

    async def page(self, *, limit: int = 100, cursor: str | None = None,
                   **filters: Any) -> Page:
        """One page of the list; pass ``next_cursor`` back as ``cursor`` for the next."""
        return await paging.page(self._http, self._path(), filters, limit, cursor)

    def iter(self, *, limit: int | None = None, page_size: int = paging.DEFAULT_PAGE,
             **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every resource (at most ``limit``), following the pages: ``async for s in ...``."""
        return paging.iterate(self._http, self._path(), filters, limit=limit,
                              page_size=page_size)

    async def list(self, *, limit: int | None = None, format: ResultFormat = "json",
                   page_size: int = paging.DEFAULT_PAGE, **filters: Any) -> Any:
        """Every resource (at most ``limit``) as records, a table or a DataFrame."""
        check_format(format)
        items = await paging.collect(self._http, self._path(), filters, limit=limit,
                                     page_size=page_size)
        return shape(items, format, self.columns if not items else None)


class Features(Resources):
    """Features of interest: what is observed (a machine, a room), in a hierarchy."""

    kind = "features"
    columns = ("name", "description", "geometry", "parent", "properties", "owner", "created")

    async def create(self, name: str, *, description: str | None = None,
                     geometry: Mapping[str, Any] | Point | None = None,
                     parent: str | None = None,
                     properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Register a feature; ``geometry`` is a GeoJSON Point or a (lon, lat) pair."""
        return await self._create(_fields(name=name, description=description,
                                          geometry=point(geometry), parent=parent,
                                          properties=properties))

    async def list(self, *, parent: str | None = None, limit: int | None = None,
                   format: ResultFormat = "json", page_size: int = paging.DEFAULT_PAGE,
                   **filters: Any) -> Any:
        """Every feature (children of ``parent`` only when given)."""
        return await super().list(limit=limit, format=format, page_size=page_size,
                                  parent=parent, **filters)


class Sensors(Resources):
    """Sensors: atomic, or composite of other sensors."""

    kind = "sensors"
    columns = ("name", "description", "kind", "components", "metadata", "owner", "created")

    async def create(self, name: str, *, description: str | None = None,
                     kind: str | None = None, components: Sequence[str] | None = None,
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Register a sensor (``kind="composite"`` with ``components`` for a composite)."""
        if components and kind is None:
            kind = "composite"
        return await self._create(_fields(
            name=name, description=description, kind=kind,
            components=list(components) if components is not None else None,
            metadata=metadata))


class Properties(Resources):
    """Observed properties: name, unit and data type of what a sensor measures."""

    kind = "properties"
    columns = ("name", "unit", "data_type", "description", "owner", "created")

    async def create(self, name: str, *, unit: str | None = None, data_type: str | None = None,
                     description: str | None = None) -> dict[str, Any]:
        """Register an observed property (``data_type``: number, string, boolean, object)."""
        return await self._create(_fields(name=name, unit=unit, data_type=data_type,
                                          description=description))


def point(geometry: Mapping[str, Any] | Sequence[float] | None) -> Any:
    """A GeoJSON Point from a (lon, lat[, alt]) pair; a mapping or None as it is."""
    if geometry is None or isinstance(geometry, Mapping):
        return geometry
    return {"type": "Point", "coordinates": [float(v) for v in geometry]}


__all__ = ["Features", "Properties", "Resources", "Sensors", "point"]
