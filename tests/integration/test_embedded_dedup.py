"""Idempotent produce on the embedded engine holds across segment rolls and reopening."""

from __future__ import annotations

from pathlib import Path

from lakeport import open_engine
from lakeport.streams.embedded import log
from lakeport.streams.types import TopicOptions

OPTIONS = TopicOptions(max_size=512 << 10, dedup_window=600)  # segments of 128 KiB
PAD = "x" * 1000


def _batches() -> list[list[str]]:
    return [[f"m-{b}-{i}" for i in range(50)] for b in range(8)]  # ~400 KB: 3 segments


async def test_msg_ids_before_a_segment_roll_are_known_after_reopening(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    first: dict[str, int] = {}
    async with open_engine(url) as engine:
        await engine.create_topic("t", OPTIONS)
        async with engine.producer("p", "t") as producer:
            for ids in _batches():
                seqnos = await producer.produce_many([{"pad": PAD}] * len(ids), msg_ids=ids)
                first.update(zip(ids, seqnos, strict=True))
        assert len(log.list_segments(tmp_path / "topics" / "t")) >= 3
        last = (await engine.topic_info("t")).last_seqno

    async with open_engine(url) as engine:  # a new producer process
        async with engine.producer("p", "t") as producer:
            for ids in _batches():
                again = await producer.produce_many([{"pad": PAD}] * len(ids), msg_ids=ids)
                assert again == [first[i] for i in ids]
            for msg_id in ("m-0-0", "m-1-25", "m-7-49"):
                assert await producer.produce({"pad": PAD}, msg_id=msg_id) == first[msg_id]
        assert (await engine.topic_info("t")).last_seqno == last


async def test_msg_ids_of_segments_rolled_by_another_writer_are_known(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    async with open_engine(url) as mine, open_engine(url) as other:
        await mine.create_topic("t", OPTIONS)
        async with mine.producer("a", "t") as producer:
            assert await producer.produce({"n": 0}) == 1  # opens our writer on segment 1
            first: dict[str, int] = {}
            async with other.producer("b", "t") as theirs:
                for ids in _batches():  # rolls segments behind our writer's back
                    seqnos = await theirs.produce_many([{"pad": PAD}] * len(ids), msg_ids=ids)
                    first.update(zip(ids, seqnos, strict=True))
            last = (await mine.topic_info("t")).last_seqno
            await producer.produce({"n": 1})  # our writer catches up with the other's commits
            for ids in _batches():
                again = await producer.produce_many([{"pad": PAD}] * len(ids), msg_ids=ids)
                assert again == [first[i] for i in ids]
            assert (await mine.topic_info("t")).last_seqno == last + 1
