"""``lakeport bridge run``: bridge an MQTT or AMQP broker and a lakeport topic, either way."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Annotated

import typer

from lakeport.cli.common import UrlOption, duration, run, stderr, stop_on_signals

if TYPE_CHECKING:
    from lakeport.routing import Bridge, BridgeStatus

app = typer.Typer(
    help="Bridge a broker (MQTT, AMQP 0-9-1) and lakeport topics: ingest into a topic, or "
    "egress out of one.\n\nExample: lakeport bridge run mqtt://127.0.0.1:1883 --subscribe "
    "'plant/#' --to raw-sensor-data --fields 'plant/{site}/{asset}/{datastream}'"
    "\n\nExample: lakeport bridge run amqp://127.0.0.1:5672 --exchange plant --subscribe "
    "'plant.#' --to raw-sensor-data --fields 'plant.{site}.{asset}.{datastream}'",
    no_args_is_help=True,
)

def _event(status: BridgeStatus, seen: list[str | None]) -> str | None:
    """A line for a change of state (connected, retrying), once each."""
    key = (f"{status.state}:{status.last_error}:{status.retry_in}" if status.state == "retrying"
           else f"{status.state}:{status.connects}")
    if key == seen[0] or status.state in ("starting", "connecting"):
        return None
    seen[0] = key
    if status.state == "connected":
        return f"connected: {status.source} → {status.target}"
    if status.state == "retrying":
        return f"{status.last_error}: retrying in {status.retry_in or 0:.1f}s"
    return None


async def _run(bridge: Bridge, url: str | None) -> BridgeStatus:
    from rich.live import Live
    from rich.text import Text

    from lakeport.streams import open_engine

    status, seen = bridge.status, [None]
    async with open_engine(url) as engine:
        with stop_on_signals() as stop:
            task = asyncio.create_task(bridge.run(stop, engine))
            live = Live(Text(status.line()), console=stderr, refresh_per_second=2,
                        transient=True) if stderr.is_terminal else None
            with live or contextlib.nullcontext():
                while not task.done():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(task), 0.5)
                    line = _event(status, seen)
                    if line:
                        stderr.print(line, markup=False, highlight=False, soft_wrap=True)
                    if live is not None:
                        live.update(Text(status.line()))
            return task.result()


@app.command("run")
def run_(
    broker: Annotated[str, typer.Argument(
        help="The broker: mqtt://host:1883 or mqtts://host:8883, ?protocol=5 for MQTT 5; "
        "amqp://host:5672/vhost or amqps://host:5671/vhost.",
        show_default=False)],
    subscribe: Annotated[list[str] | None, typer.Option(
        "--subscribe", "-s", help="Ingest: a topic filter to read (repeat for more), "
        "e.g. 'plant/+/+/temperature'; AMQP: a binding key of the queue to --exchange, e.g. "
        "'plant.*.*.temperature'.", show_default=False)] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Ingest: the lakeport topic to produce to.", show_default=False)] = None,
    fields: Annotated[str | None, typer.Option(
        "--fields", help="Ingest: topic levels into fields, e.g. "
        "'plant/{site}/{asset}/{datastream}' (+ skips a level; AMQP routing keys: "
        "'plant.{site}.{asset}.{datastream}').", show_default=False)] = None,
    payload: Annotated[str, typer.Option(
        "--payload", help="Ingest: how payloads are read: auto (JSON, else text), json, "
        "number, text, or sos (the SOS JSON, one reading per observation).")] = "auto",
    topic_field: Annotated[str, typer.Option(
        "--topic-field", help="Ingest: the field that gets the broker topic ('' for none).")]
    = "topic",
    from_topic: Annotated[str | None, typer.Option(
        "--from", help="Egress: the lakeport topic to publish.", show_default=False)] = None,
    publish: Annotated[str | None, typer.Option(
        "--publish", help="Egress: the broker topic (AMQP: routing key) from the message's "
        "fields, e.g. 'plant/{asset}/out' or 'plant.{asset}.avg'.", show_default=False)] = None,
    exchange: Annotated[str | None, typer.Option(
        "--exchange", help="AMQP: the exchange ingest binds its queue to, or egress publishes "
        "to; declared durable if missing (default: the default exchange).",
        show_default=False)] = None,
    exchange_type: Annotated[str, typer.Option(
        "--exchange-type", help="AMQP: direct, topic, fanout or headers (for a new "
        "exchange).")] = "topic",
    queue: Annotated[str | None, typer.Option(
        "--queue", help="AMQP ingest: the queue to read, declared durable if missing "
        "(default lakeport.<name>); alone, without --exchange, read as it is.",
        show_default=False)] = None,
    prefetch: Annotated[int, typer.Option(
        "--prefetch", help="AMQP ingest: deliveries not acknowledged yet at most.")] = 1000,
    qos: Annotated[int, typer.Option(
        "--qos", min=0, max=1, help="MQTT QoS 0 or 1 (subscriptions and publishes).")] = 1,
    name: Annotated[str | None, typer.Option(
        "--name", help="The bridge's name: its producer or consumer name (default "
        "mqtt-<topic>).", show_default=False)] = None,
    client_id: Annotated[str | None, typer.Option(
        "--client-id", help="The MQTT client id (default lakeport-<name>): keep it fixed, "
        "it names the broker session.", show_default=False)] = None,
    username: Annotated[str | None, typer.Option(
        "--username", help="Log in as this user.", show_default=False)] = None,
    password: Annotated[str | None, typer.Option(
        "--password", envvar="LAKEPORT_BRIDGE_PASSWORD", help="The password, or "
        "'<% secrets.NAME %>' from the secret store.", show_default=False)] = None,
    ca_file: Annotated[str | None, typer.Option(
        "--ca-file", help="mqtts: CA certificates (PEM) to verify the broker with.",
        show_default=False)] = None,
    cert_file: Annotated[str | None, typer.Option(
        "--cert-file", help="mqtts: a client certificate (PEM).", show_default=False)] = None,
    key_file: Annotated[str | None, typer.Option(
        "--key-file", help="mqtts: the client certificate's key (PEM).", show_default=False)]
    = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="mqtts: do not verify the broker's certificate.")] = False,
    protocol: Annotated[str | None, typer.Option(
        "--protocol", help="MQTT version: 3.1.1 or 5 (default: ?protocol= of the URL, else "
        "3.1.1).", show_default=False)] = None,
    session_expiry: Annotated[str, typer.Option(
        "--session-expiry", help="MQTT 5, ingest at QoS 1: how long the broker keeps the "
        "session (and queues messages) while the bridge is away.")] = "1d",
    batch: Annotated[int, typer.Option(
        "--batch", help="Messages per produce (ingest) or per confirmed batch (egress) at "
        "most.")] = 10_000,
    url: UrlOption = None,
) -> None:
    """Run a bridge until Ctrl-C or SIGTERM; while the broker cannot be reached it retries with
    backoff and says so. A refused login or a certificate that does not verify exits 1.

    Ingest, from the broker to a topic: each message becomes a JSON object with the broker
    topic, the levels that --fields names and the payload (a JSON object merged in; a bare
    number or text as value). With --qos 1 the broker gets its PUBACK only once the message
    is durable.

    Example: lakeport bridge run mqtt://127.0.0.1:1883 --subscribe 'plant/#' --to
    raw-sensor-data --fields 'plant/{site}/{asset}/{datastream}'

    Egress, from a topic to the broker: each message is published as stored, to the topic
    the template makes from its fields; the topic is acked once the broker confirmed.

    Example: lakeport bridge run mqtt://127.0.0.1:1883 --from alerts --publish
    'plant/{asset}/out' --qos 1

    Example (TLS, a login from the secret store, MQTT 5): lakeport bridge run
    'mqtts://broker:8883?protocol=5' --ca-file ca.pem --username edge --password
    '<% secrets.mqtt-password %>' --subscribe 'plant/+/+/temperature' --to raw-sensor-data

    AMQP 0-9-1 (RabbitMQ): ingest reads a durable queue bound to --exchange with the
    --subscribe binding keys and acks it once the batch is durable; egress publishes
    persistent messages with publisher confirms (one no queue takes is a dead letter).

    Example: lakeport bridge run amqp://127.0.0.1:5672 --exchange plant --subscribe
    'plant.*.*.temperature' --to raw-sensor-data --fields 'plant.{site}.{asset}.{datastream}'

    Example: lakeport bridge run amqps://broker:5671/prod --ca-file ca.pem --username edge
    --password '<% secrets.amqp-password %>' --from averages --exchange plant --publish
    'plant.{asset}.avg'
    """
    from lakeport.routing import BridgeConfig, open_bridge

    config = BridgeConfig.parse(
        url=broker, subscribe=subscribe or [], to_topic=to, fields=fields, payload=payload,
        topic_field=topic_field or None, from_topic=from_topic, publish=publish, qos=qos,
        name=name, client_id=client_id, username=username, password=password,
        ca_file=ca_file, cert_file=cert_file, key_file=key_file, insecure=insecure,
        protocol=protocol, batch_size=batch, streams_url=url, exchange=exchange,
        exchange_type=exchange_type, queue=queue, prefetch=prefetch,
        session_expiry=int(duration(session_expiry, "--session-expiry") or 0))
    bridge = open_bridge(config)
    stderr.print(f"bridge {config.bridge_name} ({config.direction}): {bridge.status.source} → "
                 f"{bridge.status.target} (Ctrl-C stops)", markup=False, highlight=False,
                 soft_wrap=True)
    status = run(_run(bridge, url))
    stderr.print(f"stopped: {status.line()}", markup=False, highlight=False, soft_wrap=True)


__all__ = ["app"]
