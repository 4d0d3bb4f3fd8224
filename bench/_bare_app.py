"""A bare ASGI app for the transfer ceiling of ``bench/server.py``.

It discards an uploaded body and serves one file (``LAKEPORT_BENCH_SOURCE``) in 4 MB reads:
what uvicorn (tuned as ``lakeport serve`` tunes it) and the lakeport client cost on their own,
with none of the server's work (no key check, store, checksum, file write or fsync).
Run by ``_transfer.BareServer``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from lakeport.allocator import tune_process

SOURCE = os.environ.get("LAKEPORT_BENCH_SOURCE", "")
CHUNK = 4 << 20


async def _respond(send: Any, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        tune_process()  # as lakeport serve does
        await _lifespan(receive, send)
        return
    if scope["method"] == "PUT":
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await _respond(send, 200, b"{}", "application/json")
    elif scope["path"] == "/health":
        await _respond(send, 200, b"ok", "text/plain")
    else:
        size = os.path.getsize(SOURCE)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(size).encode())]})
        with open(SOURCE, "rb", buffering=0) as source:
            while data := await asyncio.to_thread(source.read, CHUNK):
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
