"""Topic admin and produce over HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from starlette.responses import Response

from lakeport.errors import Conflict, Invalid
from lakeport.server.access import Level
from lakeport.server.auth import current_user
from lakeport.server.deps import get_engine, get_store
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.users import User
from lakeport.server.topics.access import (
    claim_topic,
    forget_topic,
    readable_topics,
    require_topic,
    shown_info,
    topic_level,
)
from lakeport.server.topics.producers import Producers
from lakeport.streams import Engine, Format, Producer, TopicOptions
from lakeport.streams.remote.wire import info_to_json
from lakeport.streams.types import encode_payloads, validate_topic_name
from lakeport.streams.unacked import with_oldest_unacked
from lakeport.wire import payload_from_json

router = APIRouter(tags=["topics"])
TopicName = Annotated[str, Path(description="topic name: 1-200 of A-Z a-z 0-9 + _ = : @ . -",
                                json_schema_extra={"pattern": r"^[0-9A-Za-z+_=:@.-]{1,200}$"})]

_NAME_SCHEMA = {"type": "string", "pattern": r"^[0-9A-Za-z+_=:@.-]{1,200}$",
                "description": "producer name (default: the user)"}
_HEADERS_SCHEMA = {"type": "object", "additionalProperties": {"type": "string"}}
_ONE_SCHEMA = {
    "type": "object", "required": ["payload"],
    "properties": {
        "payload": {"description": "any JSON value (json topics); text or "
                                   "{\"base64\": ...} (string and bytes topics)"},
        "headers": _HEADERS_SCHEMA, "key": {"type": "string"}, "msg_id": {"type": "string"},
        "producer": _NAME_SCHEMA,
    },
}
_BATCH_SCHEMA = {
    "type": "object", "required": ["payloads"],
    "properties": {
        "payloads": {"type": "array", "items": {}},
        "msg_ids": {"type": "array", "items": {"type": ["string", "null"]}},
        "headers": {"type": "array", "items": {"oneOf": [_HEADERS_SCHEMA, {"type": "null"}]}},
        "keys": {"type": "array", "items": {"type": ["string", "null"]}},
        "producer": _NAME_SCHEMA,
    },
}


_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}}}}}
_TOPIC = {"description": "a topic", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"name": {"type": "string"},
                                     "last_seqno": {"type": "integer"}}}}}}


def _answers(ok: int, what: dict[str, Any], *errors: int) -> dict[int | str, Any]:
    return {ok: what, 401: _ERROR, 422: _ERROR, **{code: _ERROR for code in errors}}


def _json(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"type": "object"}}}}


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


def producers_of(request: Request) -> Producers:
    return request.app.state.topic_producers


def _topic(topic: str) -> str:
    return validate_topic_name(topic)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    return body


def _opt_str(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise Invalid(f"{where}: must be a string")


def _headers(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Invalid(f"{where}: must be an object of strings")
    return value or None


def _column(body: dict[str, Any], name: str, n: int) -> list[Any] | None:
    values = body.get(name)
    if values is None:
        return None
    if not isinstance(values, list) or len(values) != n:
        raise Invalid(f"{name}: must be a list with one entry per payload ({n})")
    return values


def _producer_name(body: dict[str, Any], user: User) -> str:
    name = body.get("producer")
    if name is None:
        return user.name
    if not isinstance(name, str):
        raise Invalid("producer: must be a string")
    return validate_topic_name(name)


@dataclass
class Batch:
    """A checked batch of payloads to produce, with optional per-payload columns."""

    payloads: list[Any]
    msg_ids: list[Any] | None
    headers: list[Any] | None
    keys: list[Any] | None
    producer: str


def read_batch(body: dict[str, Any], field: str, user: User) -> Batch:
    """The batch of a produce body (payloads under ``field``); Invalid names what is wrong."""
    payloads = body.get(field)
    if not isinstance(payloads, list):
        raise Invalid(f"{field}: must be a list")
    n = len(payloads)
    msg_ids = _column(body, "msg_ids", n)
    headers = _column(body, "headers", n)
    keys = _column(body, "keys", n)
    for i in range(n):
        if msg_ids is not None:
            _opt_str(msg_ids[i], f"msg_ids[{i}]")
        if headers is not None:
            headers[i] = _headers(headers[i], f"headers[{i}]")
        if keys is not None:
            _opt_str(keys[i], f"keys[{i}]")
    return Batch(payloads, msg_ids, headers, keys, _producer_name(body, user))


async def produce_batch_to(producers: Producers, topic: str, batch: Batch) -> list[int]:
    """Produce ``batch`` in one commit; its seqnos once durable (a ``msg_id`` stored before
    answers its stored seqno)."""
    payloads, msg_ids, headers, keys = batch.payloads, batch.msg_ids, batch.headers, batch.keys
    n = len(payloads)

    async def call(producer: Producer) -> list[int]:
        fmt = producer.format
        values = payloads if fmt is Format.JSON else [payload_from_json(v, fmt) for v in payloads]
        if headers is None and keys is None and \
                (msg_ids is None or all(isinstance(m, str) for m in msg_ids)):
            return await producer.produce_many(values, msg_ids=msg_ids)
        encode_payloads(values, fmt)  # every payload fits, or nothing is stored
        none = [None] * n
        pending = [producer.produce(value, headers=h, key=k, msg_id=m) for value, h, k, m
                   in zip(values, headers or none, keys or none, msg_ids or none, strict=True)]
        return list(await asyncio.gather(*pending))

    return await producers.run(topic, batch.producer, call)


# -- admin --------------------------------------------------------------------------------
@router.get("/topics", summary="List topics", response_model=None,
            responses=_answers(200, _json("{\"items\": [topic, ...]}")))
async def list_topics(user: User = Depends(current_user), store: Store = Depends(get_store),
                      engine: Engine = Depends(get_engine)) -> JSONResponse:
    infos = await engine.list_topics()
    levels = await readable_topics(store, user, [info.name for info in infos])
    return JSONResponse({"items": [info_to_json(await shown_info(store, user, levels[info.name],
                                                                 info))
                                   for info in infos if info.name in levels]})


@router.put("/topics/{topic}", summary="Create a topic", status_code=201, response_model=None,
            responses={**_answers(201, _TOPIC, 409), 200: _TOPIC})
async def create_topic(
    topic: TopicName,
    options: TopicOptions | None = Body(default=None),
    if_exists: Literal["same", "ok", "fail"] = Query(
        "same", description="an existing topic: same = 200 if its options are these (else "
                            "409), ok = 200 whatever its options, fail = 409"),
    user: User = Depends(current_user),
    store: Store = Depends(get_store),
    engine: Engine = Depends(get_engine),
) -> JSONResponse:
    _topic(topic)
    options = options or TopicOptions()
    try:
        info = await engine.create_topic(topic, options)
    except Conflict:
        level = await topic_level(store, user, topic)
        if level < Level.READ:
            raise Conflict(f"topic {topic!r} exists and is not shared with you") from None
        if if_exists == "fail":
            raise
    else:
        await claim_topic(store, topic, user.id, fresh=True)
        return JSONResponse(info_to_json(await shown_info(store, user, Level.OWNER, info)), 201)
    info = await shown_info(store, user, level, await engine.topic_info(topic))
    if if_exists == "same" and info.options != options:
        raise Conflict(f"topic {topic!r} exists with other options: "
                       f"{info.options.model_dump_json()}")
    return JSONResponse(info_to_json(info))


@router.get("/topics/{topic}", summary="Show a topic", response_model=None,
            responses=_answers(200, _TOPIC, 404))
async def topic_info(topic: TopicName, user: User = Depends(current_user),
                     store: Store = Depends(get_store),
                     engine: Engine = Depends(get_engine)) -> JSONResponse:
    level = await require_topic(store, user, _topic(topic), Level.READ, "read")
    info = await with_oldest_unacked(engine, await engine.topic_info(topic))
    return JSONResponse(info_to_json(await shown_info(store, user, level, info)))


@router.delete("/topics/{topic}", summary="Delete a topic and its data", status_code=204,
               response_model=None,
               responses=_answers(204, {"description": "deleted"}, 404))
async def delete_topic(topic: TopicName, request: Request, user: User = Depends(current_user),
                       store: Store = Depends(get_store),
                       engine: Engine = Depends(get_engine)) -> Response:
    await require_topic(store, user, _topic(topic), Level.ADMIN, "delete")
    await engine.delete_topic(topic)
    await producers_of(request).forget(topic)
    await forget_topic(store, topic)
    return Response(status_code=204)


# -- produce ------------------------------------------------------------------------------
@router.post("/topics/{topic}/messages", summary="Produce one message", response_model=None,
             openapi_extra=_body_schema(_ONE_SCHEMA),
             responses=_answers(200, _json("{\"seqno\": n}"), 404, 410))
async def produce_one(topic: TopicName, request: Request, user: User = Depends(current_user),
                      store: Store = Depends(get_store)) -> JSONResponse:
    await require_topic(store, user, _topic(topic), Level.WRITE, "produce to")
    body = await _json_object(request)
    if "payload" not in body:
        raise Invalid("payload: required")
    headers = _headers(body.get("headers"), "headers")
    key = _opt_str(body.get("key"), "key")
    msg_id = _opt_str(body.get("msg_id"), "msg_id")
    name = _producer_name(body, user)

    async def call(producer: Producer) -> int:
        payload = payload_from_json(body["payload"], producer.format)
        return await producer.produce(payload, headers=headers, key=key, msg_id=msg_id)

    seqno = await producers_of(request).run(topic, name, call)  # Closed: 410
    return JSONResponse({"seqno": seqno})


@router.post("/topics/{topic}/messages/batch", summary="Produce a batch in one commit",
             response_model=None, openapi_extra=_body_schema(_BATCH_SCHEMA),
             responses=_answers(200, _json("{\"seqnos\": [n, ...]}"), 404, 410))
async def produce_batch(topic: TopicName, request: Request,
                        user: User = Depends(current_user),
                        store: Store = Depends(get_store)) -> JSONResponse:
    await require_topic(store, user, _topic(topic), Level.WRITE, "produce to")
    body = await _json_object(request)
    batch = read_batch(body, "payloads", user)
    seqnos = await produce_batch_to(producers_of(request), topic, batch)  # Closed: 410
    return JSONResponse({"seqnos": seqnos})


__all__ = ["Batch", "produce_batch_to", "producers_of", "read_batch", "router"]
