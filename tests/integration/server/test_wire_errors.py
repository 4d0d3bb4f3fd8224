"""One error table for every HTTP caller: for each error code the server sends, the Python
client and the ``http(s)://`` topic engine (its HTTP requests and its consumer's WebSocket
frames) raise the same lakeport exception class.

A scripted server answers ``/api/v1/topics/{code}-{status}`` with that error, so every code is
tried as the callers really receive it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from lakeport.client import Client, ClientError
from lakeport.errors import (
    Closed,
    Conflict,
    Forbidden,
    Invalid,
    LakeportError,
    NotFound,
    Terminal,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from lakeport.streams import open_engine

RAISED: list[tuple[str, int, type[LakeportError]]] = [
    ("unauthorized", 401, Unauthorized),
    ("forbidden", 403, Forbidden),
    ("not_found", 404, NotFound),
    ("conflict", 409, Conflict),
    ("closed", 410, Closed),
    ("too_large", 413, TooLarge),
    ("invalid", 422, Invalid),
    ("unavailable", 503, Unavailable),
    ("bad_request", 400, Invalid),
    ("method_not_allowed", 405, Invalid),
    ("timeout", 408, Unavailable),
    ("range_not_satisfiable", 416, Invalid),
    ("too_large", 431, TooLarge),
    ("internal", 500, Terminal),
]
"""Every (code, status) the server answers with, and the exception a caller raises for it."""


def _split(name: str) -> tuple[str, int]:
    code, status = name.rsplit("-", 1)
    return code, int(status)


async def _me(_: Request) -> JSONResponse:
    return JSONResponse({"user": "alice"})


async def _topic(request: Request) -> JSONResponse:
    code, status = _split(request.path_params["name"])
    return JSONResponse({"error": {"code": code, "message": f"scripted {code}",
                                   "details": None}}, status)


async def _consume(websocket: WebSocket) -> None:
    code, _ = _split(websocket.path_params["name"])
    await websocket.accept()
    frame = orjson.loads(await websocket.receive_text())
    await websocket.send_text(orjson.dumps({"id": frame["id"], "ok": False, "error": {
        "code": code, "message": f"scripted {code}"}}).decode())
    await websocket.receive()  # until the consumer hangs up


@pytest.fixture(scope="module")
def scripted_url() -> Iterator[str]:
    """A server answering every topic route with the error its name spells."""
    import uvicorn

    from servers import free_port

    app = Starlette(routes=[
        Route("/api/v1/me", _me),
        Route("/api/v1/topics/{name}", _topic),
        WebSocketRoute("/api/v1/topics/{name}/consume", _consume),
    ])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "scripted server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_the_table_covers_every_code_the_server_sends() -> None:
    from lakeport import wire

    assert {(code, status) for code, status, _ in RAISED} == {
        (row.code, row.status) for row in wire.ERRORS}


@pytest.mark.parametrize(("code", "status", "kind"), RAISED,
                         ids=[f"{code}-{status}" for code, status, _ in RAISED])
async def test_client_and_engine_raise_the_same_class(scripted_url: str, code: str, status: int,
                                                      kind: type[LakeportError]) -> None:
    topic = f"{code}-{status}"
    async with Client(scripted_url, "lpk_test", retries=0) as client:
        with pytest.raises(LakeportError) as by_client:
            await client.topics.info(topic)
    async with open_engine(f"{scripted_url}?api_key=lpk_test") as engine:
        with pytest.raises(LakeportError) as by_engine:
            await engine.topic_info(topic)
        with pytest.raises(LakeportError) as by_socket:
            async with engine.consumer("c", topic):
                pass

    client_error = by_client.value
    assert isinstance(client_error, ClientError)
    assert [base for base in type(client_error).__bases__ if base is not ClientError] == [kind]
    assert (client_error.status, client_error.code) == (status, code)
    assert type(by_engine.value) is kind, by_engine.value
    assert type(by_socket.value) is kind, by_socket.value
    for error in (client_error, by_engine.value, by_socket.value):
        assert f"scripted {code}" in str(error)
