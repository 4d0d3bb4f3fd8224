"""OpenAPI links between the routes: what a created resource can be used for next (read,
changed, deleted). Clients and API tools (such as schemathesis's stateful tests) follow them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

LINKS: tuple[tuple[str, str, str, str, tuple[str, ...], dict[str, str]], ...] = (
    *((f"/{kind}", "post", "201", f"/{kind}/{{name}}", ("get", "patch", "delete"),
       {"name": "$response.body#/name"}) for kind in ("sensors", "features", "properties")),
    ("/sensors", "post", "201", "/grants/{kind}/{name}", ("get", "put"),
     {"kind": "sensor", "name": "$response.body#/name"}),
    ("/topics/{topic}", "put", "201", "/topics/{topic}", ("get", "delete"),
     {"topic": "$request.path.topic"}),
    ("/topics/{topic}", "put", "201", "/topics/{topic}/messages", ("post",),
     {"topic": "$request.path.topic"}),
    ("/topics/{topic}", "put", "201", "/topics/{topic}/messages/batch", ("post",),
     {"topic": "$request.path.topic"}),
    ("/files/{path}", "put", "201", "/files/{path}", ("get", "delete", "post"),
     {"path": "$response.body#/path"}),
    ("/files/{path}", "put", "201", "/info/{path}", ("get", "patch"),
     {"path": "$response.body#/path"}),
    ("/files/{path}", "put", "201", "/table/{path}", ("get",),
     {"path": "$response.body#/path"}),
)
"""(source path, method, status, target path, target methods, target parameters)."""


def add_links(schema: dict[str, Any], prefix: str) -> None:
    """Add :data:`LINKS` to an OpenAPI document (routes under ``prefix``)."""
    paths = schema.get("paths", {})
    for source, method, status, target, methods, parameters in LINKS:
        answer = paths.get(prefix + source, {}).get(method, {}).get("responses", {}).get(status)
        if answer is None:
            continue
        for target_method in methods:
            operation = paths.get(prefix + target, {}).get(target_method)
            if operation is None or "operationId" not in operation:
                continue
            answer.setdefault("links", {})[operation["operationId"]] = {
                "operationId": operation["operationId"], "parameters": dict(parameters)}


def install(app: FastAPI, prefix: str) -> None:
    """Serve ``app``'s OpenAPI document with the links."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_links(build(), prefix)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["LINKS", "add_links", "install"]
