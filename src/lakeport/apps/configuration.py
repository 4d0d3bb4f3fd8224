"""An app's configuration: where it comes from at start, and updates while it runs.

At start an app's configuration is, in this order: the ``configuration=`` given to
:class:`~lakeport.apps.App`, the JSON object in ``LAKEPORT_APP_CONFIGURATION`` (set by
``lakeport app run``), or ``defaults.configuration`` of its ``app.yaml``.

While it runs, an app reads ``app-config.<app>``: a message ``{"configuration": {...}}``
replaces the configuration when the manifest allows it
(``flags.enable_runtime_update.configuration: true``) and the new configuration passes
``ui_schemas.configuration``; otherwise it is refused with a log line and the old one stays.
Send one with :func:`send_configuration`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lakeport.apps.messages import config_topic
from lakeport.errors import Invalid
from lakeport.streams import Consumer, open_engine

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest

logger = logging.getLogger("lakeport.apps")

CONFIGURATION_ENV = "LAKEPORT_APP_CONFIGURATION"


def initial_configuration(configuration: dict[str, Any] | None,
                          manifest: Manifest | None) -> dict[str, Any]:
    """The configuration an app starts with (see the module doc for the order)."""
    if configuration is not None:
        if not isinstance(configuration, dict):
            raise Invalid(f"configuration must be a dict, not {type(configuration).__name__}")
        return dict(configuration)
    text = os.environ.get(CONFIGURATION_ENV)
    if text:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise Invalid(f"{CONFIGURATION_ENV} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise Invalid(f"{CONFIGURATION_ENV} must be a JSON object, not {type(value).__name__}")
        return value
    if manifest is not None:
        return dict(manifest.defaults.configuration or {})
    return {}


def runtime_updates_allowed(manifest: Manifest | None) -> bool:
    return bool(manifest is not None and manifest.flags.enable_runtime_update.configuration)


def check_update(app_name: str, manifest: Manifest | None, payload: Any) -> dict[str, Any] | None:
    """The new configuration in an ``app-config`` payload, or None (logged) if it is refused."""
    if not isinstance(payload, dict) or not isinstance(payload.get("configuration"), dict):
        logger.warning('configuration update ignored: %s expects {"configuration": {...}}, '
                       "got %.200r", app_name, payload)
        return None
    if not runtime_updates_allowed(manifest):
        logger.warning("configuration update refused: %s does not allow runtime configuration "
                       "updates (flags.enable_runtime_update.configuration is false)", app_name)
        return None
    assert manifest is not None
    configuration = payload["configuration"]
    problems = manifest.validate_configuration(configuration)
    if problems:
        logger.warning("configuration update refused: invalid configuration for %s: %s",
                       app_name, "; ".join(problems))
        return None
    return configuration


async def follow_updates(consumer: Consumer, app_name: str, manifest: Manifest | None,
                         apply: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Read ``app-config.<app>`` until cancelled; ``apply`` each accepted configuration."""
    while True:
        try:
            raw = await consumer.recv()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error("app %s: reading configuration updates failed: %s", app_name, exc)
            await asyncio.sleep(1.0)
            continue
        try:
            payload = raw.payload
        except ValueError as exc:  # any bytes another client stored on the topic
            logger.warning("app %s: configuration update refused: seqno %d of topic %r cannot "
                           "be decoded (%s)", app_name, raw.seqno, consumer.topic, exc)
        else:
            configuration = check_update(app_name, manifest, payload)
            if configuration is not None:
                await apply(configuration)
        with contextlib.suppress(Exception):
            await consumer.ack(raw.seqno)


async def send_configuration(app_name: str, configuration: dict[str, Any],
                             url: str | None = None) -> int:
    """Send a configuration update to the running app ``app_name``; return its seqno.

    The app applies it only if its manifest allows runtime updates and it is valid; the
    app's log says what it did. Only apps running when it is sent receive it.
    """
    if not isinstance(configuration, dict):
        raise Invalid(f"a configuration must be a JSON object, not {type(configuration).__name__}")
    async with open_engine(url) as engine:
        async with engine.producer("lakeport-config", config_topic(app_name)) as producer:
            return await producer.produce({"configuration": configuration})
