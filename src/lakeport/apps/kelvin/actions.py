"""Custom actions: the topics they travel on, and sending one to a running app.

| topic                            | what                                                     |
|----------------------------------|----------------------------------------------------------|
| ``custom-actions.<app>``         | actions for the app (``lakeport app action``)            |
| ``custom-action-results.<app>``  | the app's results (``{"action_id", "success", ...}``)    |
| ``custom-actions``               | actions apps create (``custom-action-create``), with     |
|                                  | ``"app"`` naming the one that created it                 |

All carry ``LAKEPORT_TOPIC_PREFIX`` like every app topic.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from lakeport.apps.kelvin.wire import ActionRequest, ActionResult, asset_krn
from lakeport.apps.messages import topic_name
from lakeport.errors import Invalid, Unavailable
from lakeport.streams import open_engine

CUSTOM_ACTIONS = "custom-actions"


def action_topic(app: str) -> str:
    return topic_name(f"{CUSTOM_ACTIONS}.{app}")


def result_topic(app: str) -> str:
    return topic_name(f"custom-action-results.{app}")


def created_actions_topic() -> str:
    return topic_name(CUSTOM_ACTIONS)


def new_action(action_type: str, payload: Any, *, resource: str, asset: str | None = None,
               title: str = "", expires_in: float = 3600.0) -> ActionRequest:
    """An action of ``action_type`` for ``asset`` (else for ``resource``: the app itself)."""
    if not isinstance(payload, dict):
        raise Invalid(f"--payload must be a JSON object, not {type(payload).__name__}")
    return ActionRequest(id=str(uuid.uuid4()), type=action_type,
                         resource=asset_krn(asset) if asset else resource,
                         title=title or action_type, payload=payload,
                         expiration=datetime.now(UTC) + timedelta(seconds=expires_in))


async def send_action(app: str, request: ActionRequest, *, url: str | None = None,
                      timeout: float = 30.0) -> ActionResult:
    """Send ``request`` to the running app ``app`` and wait for its result.

    Unavailable (naming the app) when no result came within ``timeout`` seconds: the app is not
    running under ``lakeport app run``, or it does not answer that action type.
    """
    async with open_engine(url) as engine:
        for topic in (action_topic(app), result_topic(app)):
            await engine.create_topic(topic, exist_ok=True)
        reader = engine.consumer(f"lakeport-action-{uuid.uuid4().hex[:12]}", result_topic(app),
                                 position="end", ephemeral=True)
        async with reader:
            async with engine.producer("lakeport-action", action_topic(app)) as producer:
                await producer.produce(request.to_record())
            try:
                return await asyncio.wait_for(_result_for(reader, request.id), timeout)
            except TimeoutError:
                raise Unavailable(f"no result from {app} for custom action {request.type!r} within "
                              f"{timeout:g}s: is it running (lakeport app run) and does it "
                              "handle that action?") from None


async def _result_for(reader: Any, action_id: str) -> ActionResult:
    while True:
        raw = await reader.recv()
        record = raw.payload
        if isinstance(record, dict) and record.get("action_id") == action_id:
            return ActionResult(action_id, bool(record.get("success")), record.get("message"),
                                record.get("response"), record.get("resource"))
