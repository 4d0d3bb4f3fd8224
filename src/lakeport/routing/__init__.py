"""Message routing: bridges between brokers and lakeport topics (and, beside them, rules).

Bridges are chosen by the broker URL's scheme, like engines and sinks:
``open_bridge(BridgeConfig(url="mqtt://127.0.0.1:1883", subscribe=["plant/#"],
to_topic="raw-sensor-data"))``. Built in: ``mqtt://``, ``mqtts://``, ``amqp://`` and
``amqps://`` (``pip install 'lakeport[routing]'``); others come through the
``lakeport.bridges`` entry point group.

**Ingest** (``to_topic``) subscribes to topic filters and produces each message to a lakeport
topic as a JSON object: the broker topic (``topic_field``, default ``topic``), the topic
levels the ``fields`` template names (``plant/{site}/{asset}/{datastream}``; ``+`` skips a
level, a trailing ``#`` takes the rest; these win over payload keys of the same name), and
the payload read by ``payload``:

- ``auto`` (default): a JSON object is merged in; any other JSON value (a bare number such as
  ``85.2``, ``true``, a string, a list) becomes ``value``; text that is no JSON becomes
  ``value`` as a string;
- ``json``: like ``auto``, but a payload that is no JSON is a dead letter;
- ``number``: ``value`` is the number the payload spells, else a dead letter;
- ``text``: ``value`` is the payload as text;
- ``sos``: the SOS JSON of the platform lakeport replaces, ``data(sensor, {obs...}, feature)``
  as ``{"sensor": "s1", "feature": "f1", "observations": {"obs1": 1, "obs2": "x"},
  "time": "..."}`` (``feature`` and ``time`` optional): one reading per observation,
  ``{"asset": sensor, "sensor": sensor, "feature": feature, "datastream": name,
  "value": value}``, the app message format the recorder stores as observations.

A payload that cannot be read (not UTF-8, or not what ``payload`` asks for) goes with its
exact bytes and a ``dead-letter-reason`` header to ``dead-letter.bridge.<name>``.

With QoS 1 the broker's PUBACK is sent only once the message (or its dead letter) is durable
in lakeport, and the session is persistent (fixed client id, clean session off, an MQTT 5
session expiry): a bridge that is killed leaves its unacknowledged messages to the broker,
which delivers them again when it is back. Each QoS 1 message is produced with the msg_id
``mqtt:<client id>:<packet id>:<digest of topic and payload>`` (or ``mqtt:<value>`` of an
MQTT 5 user property ``msg_id``), so a redelivered message (DUP) already stored within the
topic's dedup window is dropped; a new message that happens to carry the id of one stored
before it is stored under a fresh id. QoS 0 messages have no msg_id (and a QoS 0 bridge a
clean session). The bridge subscribes on every connect: an MQTT 3.1.1 broker then sends its
retained messages again, an MQTT 5 broker only for a new subscription.

**Egress** (``from_topic``) reads the topic with a durable consumer (the bridge's name,
position ``unread``) and publishes each message's payload as it is stored to the topic the
``publish`` template makes from its JSON fields (``plant/{asset}/out``, nested fields by
dots), at ``qos``; a batch is acked on the lakeport topic only once the broker confirmed
every message of it (QoS 1: its PUBACK). A message the template cannot be filled from goes
to ``dead-letter.bridge.<name>``.

**AMQP 0-9-1** (``amqp://host:5672/vhost``, ``amqps://``; RabbitMQ): ingest reads the durable
``queue`` (default ``lakeport.<name>``, declared if missing), bound to ``exchange`` (declared
durable of ``exchange_type``, default ``topic``, if missing) with the ``subscribe`` binding
keys; without an exchange it reads the queue as it is. ``fields`` names the routing key's
``.``-separated levels (``plant.{site}.{asset}.{datastream}``); at most ``prefetch``
deliveries are unacknowledged, and they are acked (one ``multiple`` ack per batch) only once
the batch is durable, so a killed bridge leaves them to the broker, which delivers them
again. The msg_id is ``amqp:<message_id>`` when the publisher set the ``message_id``
property (a second message with it is a duplicate), else ``amqp:<queue>:<digest of routing
key and body>``, which drops a redelivered message already stored. Egress publishes each
message as stored to ``exchange`` with the routing key the ``publish`` template makes
(``plant.{asset}.avg``), persistent, with ``message_id`` ``lakeport:<topic>:<seqno>``, on a
channel with publisher confirms: a batch is published at once and acked on the topic once
all are confirmed. Messages are ``mandatory``: one that no queue takes comes back from the
broker and goes to the dead-letter topic, like one the broker nacks.

Both reconnect with exponential backoff while the broker cannot be reached (``status``
says ``retrying`` with the error); a refused login or a certificate that does not verify
ends the bridge with one clear error.
"""

from lakeport.routing.bridge import (
    Backoff,
    Bridge,
    BridgeConfig,
    BridgeStatus,
    bridge_class,
    known_bridge_schemes,
    open_bridge,
    register_bridge,
)
from lakeport.routing.bridge_payloads import PayloadFormat

__all__ = [
    "Backoff",
    "Bridge",
    "BridgeConfig",
    "BridgeStatus",
    "PayloadFormat",
    "bridge_class",
    "known_bridge_schemes",
    "open_bridge",
    "register_bridge",
]
