"""``lakeport topics consume`` on messages another client stored: any bytes on a json topic.

Such a message is printed in its documented form (``payload_base64`` and ``error`` in the
record; ``{"lakeport_undecodable": ..., "error": ...}`` with ``--payload-only``) and the
messages after it are printed too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path

import nats
import pytest

from e2e.test_cli import lakeport
from lakeport.streams import open_engine
from lakeport.streams.embedded import EmbeddedEngine
from lakeport.streams.jetstream.codec import topic_subject

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

# non-JSON text, an empty payload, invalid UTF-8, two JSON documents in one message
FOREIGN = [b"not json", b"", b"\xff\xfe{}", b'{"a": 1}{"b": 2}']


async def _store(url: str, topic: str) -> None:
    """``{"n": 1}``, the foreign payloads stored as they are, then ``{"n": 2}``."""
    async with open_engine(url) as engine:
        async with engine.producer("cli", topic) as producer:
            await producer.produce({"n": 1})
        if isinstance(engine, EmbeddedEngine):
            writer = await engine.writer(topic, engine.read_options(topic))
            await writer.add_many(b"foreign", list(FOREIGN), None)
        else:
            client = await nats.connect(url)
            try:
                for data in FOREIGN:
                    await client.jetstream().publish(topic_subject(topic), data)
            finally:
                await client.close()
        async with engine.producer("cli", topic) as producer:
            await producer.produce({"n": 2})


def _consume(topic: str, url: str, *extra: str) -> list[dict]:
    result = lakeport("topics", "consume", topic, "--position", "beginning", "--url", url,
                      *extra)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _check(topic: str, url: str) -> None:
    asyncio.run(_store(url, topic))
    raw = [base64.b64encode(data).decode() for data in FOREIGN]

    lines = _consume(topic, url, "--payload-only")
    assert lines[0] == {"n": 1} and lines[-1] == {"n": 2}
    assert [line["lakeport_undecodable"] for line in lines[1:-1]] == raw
    errors = [line["error"] for line in lines[1:-1]]
    assert all(error.startswith("payload is not valid json: ") for error in errors), errors
    assert all(set(line) == {"lakeport_undecodable", "error"} for line in lines[1:-1])

    records = _consume(topic, url)
    assert [r["seqno"] for r in records] == list(range(1, len(FOREIGN) + 3))
    assert records[0]["payload"] == {"n": 1} and records[-1]["payload"] == {"n": 2}
    for record, expected in zip(records[1:-1], raw, strict=True):
        assert "payload" not in record
        assert record["payload_base64"] == expected
        assert record["error"].startswith("payload is not valid json: ")
        assert record["time"].endswith("Z")
    # the bytes come back exactly
    assert [base64.b64decode(r["payload_base64"]) for r in records[1:-1]] == FOREIGN


def test_foreign_messages_on_the_embedded_engine_are_printed_and_the_rest_follows(
        tmp_path: Path) -> None:
    _check("foreign", (tmp_path / "streams").as_uri())


@pytest.mark.nats
def test_foreign_messages_on_nats_are_printed_and_the_rest_follows(nats_url: str) -> None:
    topic = f"foreign-{uuid.uuid4().hex[:12]}"
    try:
        _check(topic, nats_url)
    finally:
        lakeport("topics", "delete", topic, "--yes", "--url", nats_url)


def test_invalid_utf8_on_a_string_topic_is_printed_as_base64_in_records(tmp_path: Path) -> None:
    url = (tmp_path / "streams").as_uri()
    assert lakeport("topics", "create", "text", "--format", "string", "--url", url).returncode == 0

    async def store() -> None:
        async with open_engine(url) as engine:
            assert isinstance(engine, EmbeddedEngine)
            writer = await engine.writer("text", engine.read_options("text"))
            await writer.add_many(b"foreign", [b"\xffbad", b"good"], None)

    asyncio.run(store())
    bad, good = _consume("text", url)
    assert (bad["payload_base64"], good["payload"]) == (base64.b64encode(b"\xffbad").decode(),
                                                        "good")
    assert bad["error"].startswith("payload is not valid string: ")
