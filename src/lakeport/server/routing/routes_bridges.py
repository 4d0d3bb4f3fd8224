"""Routes on bridges: create, list, show (with the running bridge's status), update, delete,
start, stop. A bridge run by the server uses the server's engine: ``streams_url`` is refused."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response

from lakeport.errors import Invalid
from lakeport.routing.bridge import BridgeConfig
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.paging import Cursor, Limit
from lakeport.server.responses import JSONResponse
from lakeport.server.routing import records
from lakeport.server.routing.access import BRIDGE, check_bridge
from lakeport.server.routing.secret_fields import hide_bridge, prefix_of, revealed
from lakeport.server.store import Store
from lakeport.server.store.users import User
from lakeport.tasks.spec import check_name

router = APIRouter(tags=["bridges"])


def _config(body: Any, name: str | None = None) -> tuple[str, BridgeConfig, bool | None]:
    """(name, the checked config, ``start`` or None) of a request body."""
    if not isinstance(body, dict):
        raise Invalid("bad bridge: expected a JSON object with name, url and to_topic or "
                      "from_topic")
    fields = dict(body)
    start = fields.pop("start", None)
    if start is not None and not isinstance(start, bool):
        raise Invalid("bad bridge option start: true or false")
    if name is not None and fields.setdefault("name", name) != name:
        raise Invalid(f"bad bridge: the body names {fields['name']!r}, the path {name!r}")
    if fields.get("name") is None:
        raise Invalid("bad bridge option name: a bridge on the server needs a name")
    if fields.get("streams_url") is not None:
        raise Invalid("bad bridge option streams_url: a bridge on the server uses the "
                      "server's engine")
    check_name(fields["name"], "bridge")
    config = BridgeConfig.parse(**fields)
    return fields["name"], config, start


def _hider(name: str, config: BridgeConfig) -> records.Hide:
    fields = revealed(config.model_dump(mode="python", warnings=False,
                                        exclude={"name", "streams_url"}))
    return lambda previous: hide_bridge(fields, previous, prefix_of(BRIDGE, name))


def _status(request: Request, name: str) -> dict[str, Any] | None:
    running = records.manager_of(request).find(BRIDGE, name)
    if running is None or running.runner is None:
        return None
    return running.runner.status.to_dict()


@router.post("/bridges", status_code=201, summary="Create a bridge (started unless start is "
                                                  "false)")
async def create(request: Request, body: Any = Body(...), user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> JSONResponse:
    name, config, start = _config(body)
    await records.require_free(store, BRIDGE, name)
    await check_bridge(store, request.app.state.engine, user, name, config)
    record = await records.create(request, store, user, BRIDGE, name, _hider(name, config),
                                  start is not False)
    return JSONResponse(record, 201)


@router.get("/bridges", summary="The bridges the caller may read")
async def list_bridges(request: Request, limit: Limit = 100, cursor: Cursor = None,
                       user: User = Depends(current_user),
                       store: Store = Depends(get_store)) -> JSONResponse:
    def item(row: Any) -> dict[str, Any]:
        record = records.shown(BRIDGE, row)
        config = record.pop("config")
        return {**record, "url": config["url"], "direction": "ingest"
                if config.get("to_topic") else "egress",
                "topic": config.get("to_topic") or config.get("from_topic")}

    return JSONResponse(await records.listing(store, user, BRIDGE, limit, cursor, item))


@router.get("/bridges/{name}", summary="A bridge: its config (secrets ***), owner, states and "
                                       "the running bridge's status")
async def show(name: str, request: Request, user: User = Depends(current_user),
               store: Store = Depends(get_store)) -> JSONResponse:
    row = await records.show(store, user, BRIDGE, name)
    return JSONResponse({**records.shown(BRIDGE, row), "status": _status(request, name)})


@router.put("/bridges/{name}", summary="Replace a bridge's config; a running bridge restarts "
                                       "with it")
async def update(name: str, request: Request, body: Any = Body(...),
                 user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> JSONResponse:
    name, config, start = _config(body, name)

    async def check(owner: User) -> None:
        await check_bridge(store, request.app.state.engine, owner, name, config)

    return JSONResponse(await records.update(request, store, user, BRIDGE, name,
                                             _hider(name, config), check, start))


@router.delete("/bridges/{name}", status_code=204, response_class=Response,
               summary="Stop and delete a bridge with its grants and secrets")
async def delete(name: str, request: Request, user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> Response:
    await records.delete(request, store, user, BRIDGE, name)
    return Response(status_code=204)


@router.post("/bridges/{name}/start", summary="Start a bridge (again, after it failed)")
async def start(name: str, request: Request, user: User = Depends(current_user),
                store: Store = Depends(get_store)) -> JSONResponse:
    return JSONResponse(await records.set_desired(request, store, user, BRIDGE, name, True))


@router.post("/bridges/{name}/stop", summary="Stop a bridge")
async def stop(name: str, request: Request, user: User = Depends(current_user),
               store: Store = Depends(get_store)) -> JSONResponse:
    return JSONResponse(await records.set_desired(request, store, user, BRIDGE, name, False))


__all__ = ["router"]
