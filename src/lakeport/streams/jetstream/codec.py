"""How lakeport names, options, headers and times are written into JetStream.

Lakeport names (``^[0-9A-Za-z+_=:@.-]+$``) are encoded into tokens that are valid in stream
names, consumer names, subjects and KV keys: letters, digits, ``-`` and ``_`` stay, every other
character becomes ``=XX`` (its hex code). ``a.b:c@d+e=f`` becomes ``a=2Eb=3Ac=40d=2Be=3Df``.
A token that would be longer than JetStream allows is replaced by ``=H`` and a hash (``=H``
cannot come out of the escaping, so the two never collide); the original name is kept in
the stream or consumer description, which is where names are read back from.
"""

from __future__ import annotations

import hashlib
import re
import string
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import orjson

from lakeport.errors import Invalid
from lakeport.streams.types import Mode, TopicOptions

STREAM_PREFIX = "LP_"
SUBJECT_PREFIX = "lakeport.t."
LEASE_BUCKET = "lakeport_leases"

PRODUCER_HEADER = "Lakeport-Producer"
KEY_HEADER = "Lakeport-Key"
USER_HEADER_PREFIX = "Lakeport-H-"
MSG_ID_HEADER = "Nats-Msg-Id"

_TOKEN_SAFE = frozenset(string.ascii_letters + string.digits + "-_")
_ESCAPE_RE = re.compile(r"=([0-9A-F]{2})")
_MAX_TOKEN = 200  # JetStream allows 255 characters in a stream name, minus the prefix
_HEADER_NAME_SAFE = "!#$&'*+-.^_`|~"
_HEADER_VALUE_SAFE = "!\"#$&'()*+,/:;<=>?@[\\]^`{|}~"


def encode_token(name: str) -> str:
    """The subject-safe token for a lakeport name (reversible unless hashed)."""
    token = "".join(c if c in _TOKEN_SAFE else f"={ord(c):02X}" for c in name)
    if len(token) > _MAX_TOKEN:
        token = "=H" + hashlib.sha256(name.encode()).hexdigest()[:40]
    return token


def decode_token(token: str) -> str | None:
    """The lakeport name of a token, or None for a hashed token."""
    if token.startswith("=H"):
        return None
    return _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), token)


def stream_name(topic: str) -> str:
    return STREAM_PREFIX + encode_token(topic)


def topic_subject(topic: str) -> str:
    return SUBJECT_PREFIX + encode_token(topic)


# -- descriptions ------------------------------------------------------------------------
def topic_description(topic: str, options: TopicOptions) -> str:
    record = {"lakeport_topic": topic, "options": options.model_dump(mode="json")}
    return orjson.dumps(record).decode()


def read_topic_description(stream: str, description: str | None) -> tuple[str, TopicOptions] | None:
    """(topic name, options) from a stream's description; None if it is not a lakeport stream."""
    if not stream.startswith(STREAM_PREFIX):
        return None
    try:
        record = orjson.loads(description or "")
        return record["lakeport_topic"], TopicOptions.model_validate(record["options"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, Invalid):
        # not written by lakeport, or options out of range (written by an older version)
        name = decode_token(stream[len(STREAM_PREFIX):])
        return (name, TopicOptions()) if name else None


def consumer_description(name: str, mode: Mode) -> str:
    return orjson.dumps({"lakeport_consumer": name, "mode": mode.value}).decode()


def read_consumer_description(durable: str, description: str | None) -> tuple[str, str]:
    """(consumer name, mode) of a durable."""
    try:
        record = orjson.loads(description or "")
        return record["lakeport_consumer"], record["mode"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return decode_token(durable) or durable, "shared"


def stream_config(topic: str, options: TopicOptions, replicas: int = 1) -> dict[str, Any]:
    """The JetStream stream config that stores a topic with these options (``replicas``
    copies unless the options name their own)."""
    max_age_ns = int(options.max_age * 1e9) if options.max_age else 0
    dedup_ns = int(options.dedup_window * 1e9)
    if max_age_ns and dedup_ns > max_age_ns:
        dedup_ns = max_age_ns
    config: dict[str, Any] = {
        "name": stream_name(topic),
        "description": topic_description(topic, options),
        "subjects": [topic_subject(topic)],
        "retention": "limits",
        "storage": "file" if options.persistence.value == "disk" else "memory",
        "max_bytes": options.max_size or -1,
        "max_age": max_age_ns,
        "max_msgs": -1,
        "max_msg_size": -1,
        "discard": "old",
        "num_replicas": options.replicas or replicas,
    }
    if dedup_ns:
        config["duplicate_window"] = dedup_ns
    return config


# -- headers -----------------------------------------------------------------------------
def encode_header_name(name: str) -> str:
    return USER_HEADER_PREFIX + quote(name, safe=_HEADER_NAME_SAFE)


def encode_header_value(value: str) -> str:
    return quote(value, safe=_HEADER_VALUE_SAFE)


def message_headers(
    producer: str, headers: dict[str, str] | None, key: str | None, msg_id: str | None
) -> dict[str, str]:
    """The NATS headers of one produced message."""
    result = {PRODUCER_HEADER: producer}
    if headers:
        for name, value in headers.items():
            result[encode_header_name(str(name))] = encode_header_value(str(value))
    if key is not None:
        result[KEY_HEADER] = encode_header_value(key)
    if msg_id:
        result[MSG_ID_HEADER] = msg_id
    return result


def split_headers(raw: dict[str, str] | None) -> tuple[str, dict[str, str] | None, str | None]:
    """(producer, user headers, key) from the NATS headers of a stored message.

    Headers set by other NATS clients (not ``Nats-*``) are passed through as they are.
    """
    if not raw:
        return "", None, None
    producer = ""
    key = None
    user: dict[str, str] = {}
    for name, value in raw.items():
        if name.startswith(USER_HEADER_PREFIX):
            user[unquote(name[len(USER_HEADER_PREFIX):])] = unquote(value)
        elif name == PRODUCER_HEADER:
            producer = value
        elif name == KEY_HEADER:
            key = unquote(value)
        elif not name.startswith("Nats-"):
            user[str(name)] = value
    return producer, user or None, key


# -- times -------------------------------------------------------------------------------
def parse_time_ns(text: str | None) -> int | None:
    """Nanoseconds since the epoch of a JetStream RFC 3339 time (None for the zero time)."""
    if not text or text.startswith("0001-01-01"):
        return None
    main, _, rest = text.partition(".")
    if rest:
        digits = rest.rstrip("Z")
        for sign in "+-":
            digits = digits.split(sign, 1)[0]
        fraction = int(digits[:9].ljust(9, "0"))
    else:
        main, fraction = main.rstrip("Z"), 0
    seconds = datetime.strptime(main[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return int(seconds) * 1_000_000_000 + fraction


def format_time_ns(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, as JetStream reads start times."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def reply_fields(reply: str) -> tuple[int, int, int]:
    """(stream seq, delivery count, timestamp ns) from a JetStream ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`` (and the
    longer form with domain and account hash).
    """
    tokens = reply.split(".")
    base = 2 if len(tokens) == 9 else 4
    return int(tokens[base + 3]), int(tokens[base + 2]), int(tokens[base + 5])


def reply_pending(reply: str) -> int:
    """How many messages the server still had for the consumer after this one."""
    tokens = reply.split(".")
    return int(tokens[8] if len(tokens) == 9 else tokens[10])


def acked_of(info: dict[str, Any]) -> int:
    """The highest seqno up to which a durable has acked everything.

    Before its first ack, servers older than 2.10 report an ack floor of 0 even for a
    durable that starts later; the position before its first delivery is used then.
    """
    floor = info.get("ack_floor") or {}
    if floor.get("consumer_seq", 0) > 0:
        return floor.get("stream_seq", 0)
    delivered = (info.get("delivered") or {}).get("stream_seq", 0)
    return max(floor.get("stream_seq", 0), delivered - info.get("num_ack_pending", 0), 0)
