"""``client.grants``: give users access to topics, sensors, features and observed properties.

Files are shared by path with ``client.datalake.share``. See docs/server/access.md.
"""

from __future__ import annotations

from typing import Any, Literal

from lakeport.client.http import Http
from lakeport.client.results import ResultFormat, check_format, shape
from lakeport.client.transfer import quote_segment

Kind = Literal["topic", "sensor", "feature", "property"]
COLUMNS = ("kind", "name", "user", "permission", "created")


class Grants:
    """Grants on named resources: ``read``, ``write`` (``produce`` on topics) or ``admin``."""

    def __init__(self, http: Http) -> None:
        self._http = http

    @staticmethod
    def _path(kind: Kind, name: str) -> str:
        return f"/grants/{quote_segment(kind)}/{quote_segment(name)}"

    async def grant(self, kind: Kind, name: str, user: str, permission: str) -> dict[str, Any]:
        """Give ``user`` a permission on a resource (replacing the one they had); needs admin
        access to it."""
        return await self._http.json("PUT", self._path(kind, name),
                                     json={"user": user, "permission": permission})

    async def revoke(self, kind: Kind, name: str, user: str) -> None:
        """Take ``user``'s grant away (NotFound when there is none)."""
        await self._http.request("DELETE", self._path(kind, name), params={"user": user})

    async def list(self, kind: Kind, name: str, *, format: ResultFormat = "json") -> Any:
        """The grants on a resource (only the caller's own without admin access)."""
        check_format(format)
        items = (await self._http.json("GET", self._path(kind, name)))["items"]
        return shape(items, format, COLUMNS)


__all__ = ["COLUMNS", "Grants", "Kind"]
