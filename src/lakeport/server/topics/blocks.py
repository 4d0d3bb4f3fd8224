"""Messages copied as they are: ``POST /topics/{topic}/messages/block`` stores an Arrow block
with each message's own time, producer, headers and key (``lakeport forward``), and
``GET /topics/{topic}/msg-ids/last`` tells a producer where it stopped."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from lakeport.errors import Invalid
from lakeport.server.access import Level
from lakeport.server.auth import current_user
from lakeport.server.deps import get_engine, get_store
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.users import User
from lakeport.server.topics.access import require_topic
from lakeport.server.topics.routes import TopicName, producers_of
from lakeport.streams import Engine, Producer
from lakeport.streams.remote.wire import BLOCK_CONTENT_TYPE, ZSTD, block_from_body, decompress
from lakeport.streams.types import validate_topic_name

router = APIRouter(tags=["topics"])

_OCTETS = "application/octet-stream"
_BLOCK_BODY = {"requestBody": {"required": True, "content": {_OCTETS: {"schema": {
    "type": "string", "format": "binary",
    "description": f"one Arrow IPC stream ({BLOCK_CONTENT_TYPE} or {_OCTETS}): seqno, "
                   "timestamp_ns, producer, data, headers, key "
                   "(lakeport.streams.block.BLOCK_SCHEMA) and msg_id; Content-Encoding: zstd "
                   "allowed (decompressed at most max_body_bytes)"}}}}}
_ERROR = {"description": "error"}


@router.post("/topics/{topic}/messages/block", response_model=None,
             summary="Produce messages keeping their time, producer, headers and key",
             openapi_extra=_BLOCK_BODY,
             responses={200: {"description": "{\"seqnos\": [n, ...]}"}, 401: _ERROR,
                        403: _ERROR, 404: _ERROR, 410: _ERROR, 413: _ERROR, 422: _ERROR})
async def produce_block(topic: TopicName, request: Request,
                        user: User = Depends(current_user),
                        store: Store = Depends(get_store)) -> JSONResponse:
    await require_topic(store, user, validate_topic_name(topic), Level.WRITE, "produce to")
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind not in (BLOCK_CONTENT_TYPE, _OCTETS):
        raise Invalid(f"content-type: must be {BLOCK_CONTENT_TYPE}, not {kind!r}")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", ZSTD):
        raise Invalid(f"content-encoding: use {ZSTD} or none, not {encoding!r}")
    body = await request.body()
    if encoding == ZSTD:
        body = decompress(body, request.app.state.settings.max_body_bytes)

    async def call(producer: Producer) -> list[int]:
        block, msg_ids = block_from_body(body, producer.format)
        return await producer.produce_block(block, msg_ids=msg_ids)

    seqnos = await producers_of(request).run(topic, user.name, call)  # Closed: 410
    return JSONResponse({"seqnos": seqnos})


@router.get("/topics/{topic}/msg-ids/last", response_model=None,
            summary="The newest msg_id with a prefix (where a producer resumes)",
            responses={200: {"description": "{\"msg_id\": \"...\" or null}"}, 401: _ERROR,
                       403: _ERROR, 404: _ERROR, 422: _ERROR})
async def last_msg_id(
    topic: TopicName,
    prefix: Annotated[str, Query(min_length=1, max_length=1000)],
    producer: Annotated[str | None, Query(description="only this producer's")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000_000,
                                description="look back over this many messages")] = 1_000_000,
    user: User = Depends(current_user), store: Store = Depends(get_store),
    engine: Engine = Depends(get_engine),
) -> JSONResponse:
    await require_topic(store, user, validate_topic_name(topic), Level.WRITE, "produce to")
    find: Any = getattr(engine, "last_msg_id", None)
    if find is None:
        raise Invalid(f"the server's {engine.scheme} engine cannot look up msg_ids")
    return JSONResponse({"msg_id": await find(topic, producer, prefix, limit)})


__all__ = ["router"]
