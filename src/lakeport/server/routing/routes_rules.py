"""Routes on rules: create, list, show, update, delete, start, stop, stats, and a dry run of
a statement on the last messages of its topic (``POST /rules/test``)."""

from __future__ import annotations

import contextlib
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from lakeport.errors import Invalid
from lakeport.routing.actions import rule_class
from lakeport.routing.spec import RuleSpec
from lakeport.server.access import Level
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.paging import Cursor, Limit
from lakeport.server.responses import JSONResponse
from lakeport.server.routing import records
from lakeport.server.routing.access import RULE, check_rule
from lakeport.server.routing.observations import observation_writer
from lakeport.server.routing.secret_fields import hide_rule, prefix_of, revealed
from lakeport.server.store import Store
from lakeport.server.store.users import User
from lakeport.server.topics.access import require_topic
from lakeport.streams.base import EndOfTopic
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import Position
from lakeport.tasks.spec import check_name

router = APIRouter(tags=["rules"])
INTERNAL = ("_seqno", "_window_start", "_window_end", "__ok")
ZERO_STATS = {"rows_in": 0, "rows_out": 0, "dropped": 0, "late": 0, "errors": 0, "blocks": 0,
              "acked": 0, "lag": 0, "action_errors": {}, "rate": 0.0}


def _spec(body: Any, name: str | None = None) -> tuple[RuleSpec, bool | None]:
    """The checked spec of a request body and its ``start`` (None: not given)."""
    if not isinstance(body, dict):
        raise Invalid("bad rule: expected a JSON object with name, sql and actions")
    fields = dict(body)
    start = fields.pop("start", None)
    if start is not None and not isinstance(start, bool):
        raise Invalid("bad rule field start: true or false")
    if name is not None and fields.setdefault("name", name) != name:
        raise Invalid(f"bad rule: the body names {fields['name']!r}, the path {name!r}")
    spec = RuleSpec.parse(**fields)
    check_name(spec.name, "rule")
    return spec, start


def _source(request: Request, store: Store, user: User, spec: RuleSpec) -> str:
    """The rule's source topic once the statement and every action could be made (400
    with the statement's position otherwise)."""
    from lakeport.routing.actions import rule_runner

    runner = rule_runner(spec, request.app.state.engine, observations=observation_writer(
        store, request.app.state.observations, user))
    try:
        return runner.rule.topic
    finally:
        runner.rule.close()


def _hider(spec: RuleSpec) -> records.Hide:
    fields = revealed(spec.model_dump(mode="python", warnings=False))
    return lambda previous: hide_rule(fields, previous, prefix_of(RULE, spec.name))


class TestBody(BaseModel):
    """A statement to try on the last ``sample`` messages of its topic."""

    model_config = ConfigDict(extra="forbid")

    sql: str
    sample: int = Field(default=100, ge=1, le=10_000)
    event_time: str | None = "time"
    lateness: str | float = 0


@router.post("/rules/test", summary="Evaluate a statement on the last messages of its topic, "
                                    "without acting")
async def test(request: Request, body: TestBody, user: User = Depends(current_user),
               store: Store = Depends(get_store)) -> JSONResponse:
    rule = rule_class()(body.sql, event_time=body.event_time, lateness=body.lateness)
    try:
        await require_topic(store, user, rule.topic, Level.READ, "read")
        block = await _last(request, rule.topic, body.sample)
        out = rule.evaluate(block)
        table = out.table
        if rule.windows is not None:
            flushed = rule.flush()
            table = pa.concat_tables([table, flushed.select(table.column_names)]
                                     if flushed.num_rows else [table])
    finally:
        rule.close()
    columns = [c for c in table.column_names if c not in INTERNAL]
    rows = [[_plain(row[c]) for c in columns] for row in table.select(columns).to_pylist()]
    return JSONResponse({"columns": columns, "rows": rows,
                         "errors": [{"seqno": e.seqno, "reason": e.reason} for e in out.errors],
                         "rows_in": out.rows_in, "dropped": out.dropped})


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def _last(request: Request, topic: str, sample: int) -> MessageBlock:
    """The last ``sample`` messages of ``topic``."""
    engine = request.app.state.engine
    info = await engine.topic_info(topic)
    if not info.entries or not info.last_seqno:
        return MessageBlock.empty()
    start = max(info.first_seqno, info.last_seqno - sample + 1, 1)
    blocks: list[MessageBlock] = []
    got = 0
    async with engine.consumer(f"rule-test-{uuid.uuid4().hex}", topic,
                               position=Position.at_seqno(start), ephemeral=True,
                               follow=False) as consumer:
        with contextlib.suppress(TimeoutError, EndOfTopic):
            while got < sample:
                block = await consumer.recv_block(sample - got, timeout=1.0)
                if not len(block):
                    break
                blocks.append(block)
                got += len(block)
    return MessageBlock.concat(blocks) if blocks else MessageBlock.empty()


@router.post("/rules", status_code=201, summary="Create a rule (started unless start is false)")
async def create(request: Request, body: Any = Body(...), user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> JSONResponse:
    spec, start = _spec(body)
    source = _source(request, store, user, spec)
    await records.require_free(store, RULE, spec.name)
    await check_rule(store, request.app.state.engine, user, spec, source)
    record = await records.create(request, store, user, RULE, spec.name, _hider(spec),
                                  start is not False)
    return JSONResponse(record, 201)


@router.get("/rules", summary="The rules the caller may read")
async def list_rules(limit: Limit = 100, cursor: Cursor = None,
                     user: User = Depends(current_user),
                     store: Store = Depends(get_store)) -> JSONResponse:
    def item(row: Any) -> dict[str, Any]:
        record = records.shown(RULE, row)
        spec = record.pop("spec")
        return {**record, "sql": spec["sql"],
                "actions": [action["type"] for action in spec["actions"]]}

    return JSONResponse(await records.listing(store, user, RULE, limit, cursor, item))


@router.get("/rules/{name}", summary="A rule: its spec (secrets ***), owner, states and stats")
async def show(name: str, request: Request, user: User = Depends(current_user),
               store: Store = Depends(get_store)) -> JSONResponse:
    row = await records.show(store, user, RULE, name)
    record = records.shown(RULE, row)
    running = records.manager_of(request).find(RULE, name)
    record["stats"] = await _stats(running) if running is not None else None
    return JSONResponse(record)


async def _stats(running: Any) -> dict[str, Any]:
    if running is None or running.runner is None:
        return dict(ZERO_STATS)
    try:
        return {**ZERO_STATS, **await running.runner.info()}
    except Exception:  # not open yet, or closing
        return dict(ZERO_STATS)


@router.get("/rules/{name}/stats", summary="A rule's counts, lag and rate, with its state")
async def stats(name: str, request: Request, user: User = Depends(current_user),
                store: Store = Depends(get_store)) -> JSONResponse:
    row = await records.show(store, user, RULE, name)
    running = records.manager_of(request).find(RULE, name)
    state = row.state if row.desired == "running" else "stopped"
    return JSONResponse({**await _stats(running), "state": state, "error": row.error})


@router.put("/rules/{name}", summary="Replace a rule's spec; a running rule restarts with it")
async def update(name: str, request: Request, body: Any = Body(...),
                 user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> JSONResponse:
    spec, start = _spec(body, name)
    source = _source(request, store, user, spec)

    async def check(owner: User) -> None:
        await check_rule(store, request.app.state.engine, owner, spec, source)

    return JSONResponse(await records.update(request, store, user, RULE, name, _hider(spec),
                                             check, start))


@router.delete("/rules/{name}", status_code=204, response_class=Response,
               summary="Stop and delete a rule with its grants and secrets")
async def delete(name: str, request: Request, user: User = Depends(current_user),
                 store: Store = Depends(get_store)) -> Response:
    await records.delete(request, store, user, RULE, name)
    return Response(status_code=204)


@router.post("/rules/{name}/start", summary="Start a rule (again, after it failed)")
async def start(name: str, request: Request, user: User = Depends(current_user),
                store: Store = Depends(get_store)) -> JSONResponse:
    return JSONResponse(await records.set_desired(request, store, user, RULE, name, True))


@router.post("/rules/{name}/stop", summary="Stop a rule")
async def stop(name: str, request: Request, user: User = Depends(current_user),
               store: Store = Depends(get_store)) -> JSONResponse:
    return JSONResponse(await records.set_desired(request, store, user, RULE, name, False))


__all__ = ["router"]
