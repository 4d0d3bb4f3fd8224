"""A failure while writing fails the produces it concerns, and nothing else: later produces
are stored and closing never waits on a broken writer."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lakeport import open_engine
from lakeport.errors import Invalid, LakeportError, Terminal, Transient
from lakeport.streams import TopicOptions
from lakeport.streams.embedded.writer import TopicWriter

GUARD = 30.0  # seconds: a generous deadline that only turns a hang into a failure


class Failure:
    """Makes ``TopicWriter.<name>`` raise ``error`` while ``on`` (or just once); counts calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, error: Exception,
                 once: bool = False) -> None:
        self.on = True
        self.calls = 0
        original: Callable[..., Any] = getattr(TopicWriter, name)

        def failing(writer: TopicWriter, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.on:
                self.on = not once
                raise error
            return original(writer, *args, **kwargs)

        monkeypatch.setattr(TopicWriter, name, failing)


async def _stored(engine: Any, topic: str) -> list[Any]:
    async with engine.consumer("check", topic, position="beginning", follow=False,
                               ephemeral=True) as consumer:
        return [message.payload async for message in consumer]


@pytest.mark.parametrize(
    ("method", "error", "kind", "words"),
    [
        ("_write", OverflowError("int too large to convert"), Terminal, "OverflowError"),
        ("_write", OSError(errno.ENOSPC, "No space left on device"), Transient,
         "No space left"),
        ("_commit_items", RuntimeError("broken"), Terminal, "RuntimeError: broken"),
    ],
    ids=["overflow-in-commit", "disk-full", "outside-the-commit"],
)
async def test_a_failed_commit_fails_its_produces_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, error: Exception,
    kind: type[LakeportError], words: str,
) -> None:
    failure = Failure(monkeypatch, method, error)
    engine = open_engine((tmp_path / "streams").as_uri())
    await engine.open()
    try:
        async with engine.producer("p", "raw") as producer:
            waiting = [producer.produce({"n": n}) for n in range(5)]
            many = asyncio.ensure_future(producer.produce_many([{"n": 5}, {"n": 6}]))
            for pending in [*waiting, many]:
                with pytest.raises(kind) as caught:
                    await asyncio.wait_for(pending, GUARD)
                assert "'raw'" in str(caught.value)
                assert words in str(caught.value)
            assert failure.calls
            failure.on = False
            assert await asyncio.wait_for(producer.produce({"n": 7}), GUARD) == 1
            assert await asyncio.wait_for(producer.produce_many([{"n": 8}]), GUARD) == [2]
        assert await _stored(engine, "raw") == [{"n": 7}, {"n": 8}]
    finally:
        await asyncio.wait_for(engine.close(), GUARD)


async def test_retention_failing_after_a_commit_does_not_fail_the_stored_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lakeport.streams.embedded")
    failure = Failure(monkeypatch, "_apply_retention", OverflowError("retention"), once=True)
    engine = open_engine((tmp_path / "streams").as_uri())
    await engine.open()
    try:
        await engine.create_topic("raw", TopicOptions(max_age="7d"))
        async with engine.producer("p", "raw") as producer:
            assert await asyncio.wait_for(producer.produce({"n": 1}), GUARD) == 1
            assert await asyncio.wait_for(producer.produce({"n": 2}), GUARD) == 2
        assert failure.calls == 2
        assert await _stored(engine, "raw") == [{"n": 1}, {"n": 2}]
    finally:
        await asyncio.wait_for(engine.close(), GUARD)
    assert any("retention failed" in r.getMessage() and "raw" in r.getMessage()
               for r in caplog.records)


async def test_messages_that_cannot_be_encoded_fail_alone(tmp_path: Path) -> None:
    engine = open_engine((tmp_path / "streams").as_uri())
    await engine.open()
    try:
        async with engine.producer("p", "raw") as producer:
            bad = producer.produce({"n": 0}, headers={"h": object()})  # type: ignore[dict-item]
            with pytest.raises(Invalid, match="cannot encode messages for topic 'raw'"):
                await asyncio.wait_for(bad, GUARD)
            assert await asyncio.wait_for(producer.produce({"n": 1}), GUARD) == 1
    finally:
        await asyncio.wait_for(engine.close(), GUARD)


async def test_closing_the_engine_while_a_commit_fails_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Failure(monkeypatch, "_write", OverflowError("int too large to convert"))
    engine = open_engine((tmp_path / "streams").as_uri())
    await engine.open()
    producer = engine.producer("p", "raw")
    await producer.open()
    pending = producer.produce({"n": 0})
    await asyncio.wait_for(engine.close(), GUARD)
    with pytest.raises(Terminal, match="OverflowError"):
        await asyncio.wait_for(pending, GUARD)
    await producer.close()


@pytest.mark.parametrize("engine_url", ["http"], indirect=True)
async def test_remote_produce_that_cannot_be_sent_fails_alone(engine_url: str,
                                                              topic: str) -> None:
    async with open_engine(engine_url) as engine:
        producer = engine.producer("p", topic)
        await producer.open()
        try:
            bad = producer.produce({"n": 0}, headers={"h": object()})  # type: ignore[dict-item]
            with pytest.raises(Invalid, match=f"cannot send messages to topic '{topic}'"):
                await asyncio.wait_for(bad, GUARD)
            assert await asyncio.wait_for(producer.produce({"n": 1}), GUARD) == 1
        finally:
            await asyncio.wait_for(producer.close(), GUARD)
