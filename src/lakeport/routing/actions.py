"""Where a rule's rows go: one :class:`Action` per entry of :attr:`RuleSpec.actions
<lakeport.routing.spec.RuleSpec>`, and :func:`rule_runner` that puts a spec to work.

Each action gets every block's output rows at once (:meth:`Action.send`: the rows, their
JSON text and their message ids) and returns only when every row is confirmed on the other
side, or with the rows it could not deliver for good and why; the runner sends those to the
rule's dead-letter topic and acks the block after that. Trouble that passes (a broker or the
observation store unreachable) is retried with backoff inside the action, so the block is
not acked and the rule's lag grows until the other side is back; a webhook gives up after its
``retries`` and its rows become dead letters.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lakeport.errors import Invalid, LakeportError, Transient
from lakeport.routing.bridge import Backoff, BridgeConfig, Publisher, open_bridge
from lakeport.routing.bridge_payloads import TopicTemplate, Unreadable
from lakeport.routing.spec import (
    AmqpAction,
    MqttAction,
    ObservationsAction,
    RuleSpec,
    TopicAction,
    WebhookAction,
)
from lakeport.streams.types import Format

if TYPE_CHECKING:
    from lakeport.routing.rule import Rule
    from lakeport.routing.runner import RuleRunner
    from lakeport.streams import Engine, Producer

log = logging.getLogger("lakeport.routing")

Failures = list[tuple[int, str]]
"""(row index, reason) of the rows an action could not deliver for good."""
ObservationWriter = Callable[[list[dict[str, Any]]], Awaitable[Failures]]
"""Stores rows in the app message format as observations; returns the rows it refused."""


class Action(ABC):
    """One destination of a rule's rows; ``label`` names it in stats and dead letters."""

    label: str

    async def open(self) -> None:
        """Connect (called once before the first block)."""
        return None

    @abstractmethod
    async def send(self, rows: list[dict[str, Any]], texts: list[bytes],
                   ids: list[str]) -> Failures:
        """Deliver ``rows`` (``texts``: the same as JSON; ``ids``: exactly-once message ids)
        and return once all are confirmed: the rows refused for good."""

    async def close(self) -> None:
        """Let go of connections."""
        return None


class TopicSink(Action):
    """Rows to a lakeport topic, with the rule's message ids (a replay stores nothing twice)."""

    def __init__(self, engine: Engine, producer_name: str, topic: str) -> None:
        self.label = f"topic:{topic}"
        self.engine, self.producer_name, self.topic = engine, producer_name, topic
        self._producer: Producer | None = None

    async def open(self) -> None:
        if self._producer is None:
            producer = self.engine.producer(self.producer_name, self.topic)
            await producer.open()
            self._producer = producer

    async def send(self, rows: list[dict[str, Any]], texts: list[bytes],
                   ids: list[str]) -> Failures:
        assert self._producer is not None
        payloads: list[Any] = rows if self._producer.format is Format.JSON else texts
        await self._producer.produce_many(payloads, msg_ids=ids)
        return []

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.close()
            self._producer = None


class BrokerSink(Action):
    """Rows to an MQTT topic or an AMQP routing key made from a template, through the
    :class:`~lakeport.routing.bridge.Publisher` of the broker's bridge; a lost connection is
    reconnected with backoff and the rows not confirmed are published again."""

    def __init__(self, label: str, config: BridgeConfig, template: TopicTemplate) -> None:
        self.label, self.config, self.template = label, config, template
        self._bridge = open_bridge(config)
        self._publisher: Publisher | None = None
        self._backoff = Backoff(config.retry_first, config.retry_max)

    async def open(self) -> None:
        """Connect now: a wrong password or certificate is known before the first block (and
        an AMQP exchange is declared)."""
        if self._publisher is None:
            self._publisher = await self._bridge.publisher()

    async def send(self, rows: list[dict[str, Any]], texts: list[bytes],
                   ids: list[str]) -> Failures:
        failed: Failures = []
        items: list[tuple[str, bytes]] = []
        where: list[int] = []
        for index, (row, text) in enumerate(zip(rows, texts, strict=True)):
            try:
                items.append((self.template.render(row), text))
                where.append(index)
            except Unreadable as exc:
                failed.append((index, str(exc)))
        while items:
            try:
                if self._publisher is None:
                    self._publisher = await self._bridge.publisher()
                refused = await self._publisher.publish(items)
            except Transient as exc:
                await self._drop()
                delay = self._backoff.next()
                log.info("rule action %s: %s; retrying in %.1fs", self.label, exc, delay)
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            failed.extend((where[i], reason) for i, reason in refused)
            break
        return failed

    async def _drop(self) -> None:
        if self._publisher is not None:
            publisher, self._publisher = self._publisher, None
            try:
                await publisher.close()
            except Exception:  # the connection is gone anyway
                log.debug("closing %s", self.label, exc_info=True)

    async def close(self) -> None:
        await self._drop()


class ObservationsSink(Action):
    """Rows to the observation store through the server's writer."""

    label = "observations"

    def __init__(self, writer: ObservationWriter) -> None:
        self.writer = writer

    async def send(self, rows: list[dict[str, Any]], texts: list[bytes],
                   ids: list[str]) -> Failures:
        return await self.writer(rows)


class WebhookSink(Action):
    """Rows POSTed as JSON arrays of up to ``batch`` rows; a network error, a 429 or a 5xx is
    retried with backoff up to ``retries`` times, then (or on another 4xx at once) the rows
    of that request fail with the last answer as the reason."""

    def __init__(self, spec: WebhookAction) -> None:
        import httpx

        if not spec.url.startswith(("http://", "https://")):
            raise Invalid(f"webhook url {spec.url!r}: use http:// or https://")
        self.label = f"webhook:{spec.url.split('?')[0]}"
        self.spec = spec
        headers = {name: _secret(value) for name, value in spec.headers.items()}
        self._client = httpx.AsyncClient(timeout=spec.timeout, headers={
            "content-type": "application/json", **headers})

    async def send(self, rows: list[dict[str, Any]], texts: list[bytes],
                   ids: list[str]) -> Failures:
        failed: Failures = []
        size = self.spec.batch
        for start in range(0, len(texts), size):
            part = texts[start:start + size]
            reason = await self._post(b"[" + b",".join(part) + b"]")
            if reason is not None:
                failed.extend((start + i, reason) for i in range(len(part)))
        return failed

    async def _post(self, body: bytes) -> str | None:
        import httpx

        backoff = Backoff(0.2, 10.0)
        reason = ""
        for attempt in range(self.spec.retries + 1):
            if attempt:
                await asyncio.sleep(backoff.next())
            try:
                answer = await self._client.post(self.spec.url, content=body)
            except httpx.HTTPError as exc:
                reason = f"webhook {self.spec.url}: {type(exc).__name__}: {exc}"
                continue
            if answer.is_success:
                return None
            reason = f"webhook {self.spec.url} answered {answer.status_code}"
            if answer.status_code != 429 and answer.status_code < 500:
                return reason
        return f"{reason} (after {self.spec.retries} retries)" if self.spec.retries else reason

    async def close(self) -> None:
        await self._client.aclose()


def _secret(value: str) -> str:
    if "<%" not in value:
        return value
    from lakeport.apps.secrets import SecretStore, resolve_secrets

    return resolve_secrets(value, SecretStore())


def _broker_config(spec: MqttAction | AmqpAction, name: str) -> tuple[BridgeConfig,
                                                                       TopicTemplate]:
    fields: dict[str, Any] = {**spec.connection(), "name": f"rule.{name}",
                              "from_topic": f"rule.{name}"}
    if spec.password is not None:
        fields["password"] = spec.password.get_secret_value()
    if isinstance(spec, MqttAction):
        fields.update(publish=spec.publish, qos=spec.qos, protocol=spec.protocol)
        return BridgeConfig.parse(**fields), TopicTemplate(spec.publish)
    fields.update(publish=spec.routing_key or spec.exchange, exchange=spec.exchange,
                  exchange_type=spec.exchange_type)
    template = TopicTemplate(spec.routing_key, "*#") if spec.routing_key else _Fixed("")
    return BridgeConfig.parse(**fields), template


class _Fixed(TopicTemplate):
    """The same target for every row (an AMQP fanout exchange needs no routing key)."""

    def __init__(self, target: str) -> None:
        self.template, self.wildcards, self.parts = target, "", [target]

    def render(self, payload: Any) -> str:
        return self.template


def build_action(spec: Any, engine: Engine, rule_name: str,
                 observations: ObservationWriter | None = None) -> Action:
    """The :class:`Action` for one entry of a rule's ``actions``."""
    if isinstance(spec, TopicAction):
        return TopicSink(engine, f"rule.{rule_name}", spec.topic)
    if isinstance(spec, MqttAction | AmqpAction):
        config, template = _broker_config(spec, rule_name)
        scheme = spec.url.split(":", 1)[0]
        target = spec.publish if isinstance(spec, MqttAction) else spec.exchange
        return BrokerSink(f"{scheme}:{target}", config, template)
    if isinstance(spec, ObservationsAction):
        if observations is None:
            raise Invalid("an observations action needs the server's observation store: "
                          "create the rule on a lakeport server")
        return ObservationsSink(observations)
    if isinstance(spec, WebhookAction):
        return WebhookSink(spec)
    raise Invalid(f"unknown rule action {spec!r}")


def action_targets(spec: RuleSpec) -> list[tuple[str, str]]:
    """``(kind, target)`` of each action, for access checks: ``("topic", name)``,
    ``("observations", "")``, ``("mqtt", url)``, ``("amqp", url)``, ``("webhook", url)``."""
    out = []
    for action in spec.actions:
        if isinstance(action, TopicAction):
            out.append(("topic", action.topic))
        elif isinstance(action, ObservationsAction):
            out.append(("observations", ""))
        else:
            out.append((action.type, action.url))
    return out


def rule_class() -> type[Rule]:
    """:class:`~lakeport.routing.rule.Rule`; Invalid naming the extra when DuckDB or sqlglot
    is not installed."""
    try:
        from lakeport.routing.rule import Rule
    except ImportError as exc:
        raise Invalid(f"rules need a missing package ({exc.name}): "
                      "pip install 'lakeport[routing]'") from None
    return Rule


def rule_runner(spec: RuleSpec, engine: Engine, *,
                observations: ObservationWriter | None = None) -> RuleRunner:
    """A :class:`~lakeport.routing.runner.RuleRunner` for ``spec`` (not opened yet);
    Invalid on a bad statement (with its position) or an action that cannot be made."""
    rule = rule_class()(spec.sql, event_time=spec.event_time, lateness=spec.lateness)
    try:
        actions = [build_action(a, engine, spec.name, observations) for a in spec.actions]
    except LakeportError:
        rule.close()
        raise
    from lakeport.routing.runner import RuleRunner

    return RuleRunner(engine, rule, spec.name, actions=actions,
                      dead_letter_topic=spec.dead_letter_topic)


__all__ = ["Action", "BrokerSink", "Failures", "ObservationWriter", "ObservationsSink",
           "TopicSink", "WebhookSink", "action_targets", "build_action", "rule_class",
           "rule_runner"]
