"""Query strings are checked like request bodies: a parameter no route declares is a 422
naming it (``?limt=5`` is not silently ignored), on every HTTP route of the app.

A route reads the query parameters it declares (its own and its dependencies'). One that also
takes free-form keys names their prefixes in ``openapi_extra={"x-query-prefixes": [...]}``
(e.g. ``meta.`` of the file search). WebSocket routes read their own query (``api_key``) and
are not checked. The same dependency binds the request's paging cursors to its query
(:func:`lakeport.server.paging.bind_cursors`).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from starlette.requests import HTTPConnection

from lakeport.server.paging import bind_cursors

PREFIXES_KEY = "x-query-prefixes"
"""The ``openapi_extra`` key of a route's free-form query key prefixes."""
_CACHE = "_lakeport_query_params"


def _declared(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for child in dependant.dependencies:
        names |= _declared(child)
    return names


def _accepted(route: Any) -> tuple[frozenset[str], tuple[str, ...]]:
    """(declared names, free-form prefixes) of ``route``, computed once and kept on it."""
    found: tuple[frozenset[str], tuple[str, ...]] | None = getattr(route, _CACHE, None)
    if found is None:
        extra = getattr(route, "openapi_extra", None) or {}
        found = (frozenset(_declared(route.dependant)), tuple(extra.get(PREFIXES_KEY, ())))
        setattr(route, _CACHE, found)
    return found


async def known_query_params(connection: HTTPConnection) -> None:
    """FastAPI dependency: 422 naming the first query parameter the matched route does not
    read; binds the request's cursors to its query."""
    if connection.scope["type"] != "http":
        return
    route = connection.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    names, prefixes = _accepted(route)
    for key in connection.query_params:
        if key not in names and not (prefixes and key.startswith(prefixes)):
            use = ", ".join(sorted(names)) or "none"
            raise RequestValidationError([{
                "type": "extra_forbidden", "loc": ("query", key),
                "msg": f"unknown query parameter (this route takes: {use})", "input": None}])
    bind_cursors(connection.url.path, connection.query_params.multi_items())


def install(app: FastAPI) -> None:
    """Check the query parameters of every route included after this call."""
    app.router.dependencies.append(Depends(known_query_params))


__all__ = ["PREFIXES_KEY", "install", "known_query_params"]
