"""The embedded engine keeps what it acknowledged: crashes, torn tails, other processes."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lakeport import open_engine
from lakeport.streams.embedded import log

pytestmark = pytest.mark.slow

PRODUCER = textwrap.dedent(
    """
    import asyncio, sys
    from lakeport import open_engine

    async def main(url):
        async with open_engine(url) as engine:
            async with engine.producer("crashy", "raw") as producer:
                n = 0
                while True:
                    seqnos = await producer.produce_many([{"n": n + i} for i in range(200)])
                    for i, seqno in enumerate(seqnos):
                        print(seqno, n + i, flush=False)
                    sys.stdout.flush()
                    n += 200

    asyncio.run(main(sys.argv[1]))
    """
)

CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from lakeport import open_engine

    async def main(url, out):
        async with open_engine(url) as engine:
            async with engine.consumer("worker", "raw", position="unread") as consumer:
                with open(out, "a") as seen:
                    while True:
                        batch = await consumer.recv_batch(50)
                        for message in batch:
                            seen.write(f"{message.seqno}\\n")
                        seen.flush()
                        await consumer.ack(batch[-1].seqno)
                        print("acked", batch[-1].seqno, flush=True)
                        await asyncio.sleep(0.001)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=os.environ
    )


async def _read_all(url: str, topic: str) -> list:
    async with open_engine(url) as engine:
        async with engine.consumer("check", topic, position="beginning", follow=False) as c:
            return [m async for m in c]


def test_sigkill_producer_loses_nothing_acknowledged(tmp_path: Path) -> None:
    url = (tmp_path / "streams").as_uri()
    proc = _spawn(PRODUCER, url)
    acknowledged: dict[int, int] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        seqno, n = map(int, line.split())
        acknowledged[seqno] = n
        if len(acknowledged) >= 20_000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    stored = {m.seqno: m.payload["n"] for m in asyncio.run(_read_all(url, "raw"))}
    missing = [s for s in acknowledged if stored.get(s) != acknowledged[s]]
    assert not missing, f"{len(missing)} acknowledged messages lost, first {missing[:5]}"
    assert sorted(stored) == list(range(1, len(stored) + 1)), "seqnos are not gapless"


def test_sigkill_consumer_resumes_at_unread_without_skipping(tmp_path: Path) -> None:
    url = (tmp_path / "streams").as_uri()

    async def fill() -> None:
        async with open_engine(url) as engine, engine.producer("p", "raw") as producer:
            await producer.produce_many([{"n": i} for i in range(5_000)])

    asyncio.run(fill())
    seen_file = tmp_path / "seen.txt"
    proc = _spawn(CONSUMER, url, str(seen_file))
    assert proc.stdout is not None
    last_acked = 0
    for line in proc.stdout:
        last_acked = int(line.split()[1])
        if last_acked >= 1_000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    async def resume() -> list[int]:
        async with open_engine(url) as engine:
            info = await engine.topic_info("raw")
            acked = {c.name: c.acked for c in info.consumers}["worker"]
            assert acked >= last_acked
            async with engine.consumer("worker", "raw", position="unread", follow=False) as c:
                seqnos = [m.seqno async for m in c]
            assert seqnos[0] == acked + 1, "resumed somewhere else than after the last ack"
            return seqnos

    resumed = asyncio.run(resume())
    processed = {int(s) for s in seen_file.read_text().split()}
    assert processed | set(resumed) == set(range(1, 5_001)), "a message was skipped"


async def _produce(url: str, payloads: list) -> list[int]:
    async with open_engine(url) as engine, engine.producer("p", "raw") as producer:
        return await producer.produce_many(payloads)


def test_torn_tail_is_truncated_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = (tmp_path / "streams").as_uri()
    asyncio.run(_produce(url, [{"n": i} for i in range(100)]))
    asyncio.run(_produce(url, [{"n": i} for i in range(100, 150)]))
    segment = log.segment_path(tmp_path / "streams" / "topics" / "raw", 1)
    size = segment.stat().st_size
    with open(segment, "r+b") as f:  # tear the last batch: cut it in the middle
        f.truncate(size - 30)

    caplog.set_level(logging.WARNING, logger="lakeport.streams.embedded")
    seqnos = asyncio.run(_produce(url, [{"n": "after"}]))
    assert seqnos == [101], "the torn batch must be dropped and seqnos continue after it"
    assert any("dropped" in r.getMessage() and "torn" in r.getMessage() for r in caplog.records)
    messages = asyncio.run(_read_all(url, "raw"))
    assert [m.payload["n"] for m in messages] == [*range(100), "after"]


def test_corrupt_record_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = (tmp_path / "streams").as_uri()
    asyncio.run(_produce(url, [{"n": i} for i in range(10)]))
    asyncio.run(_produce(url, [{"n": i} for i in range(10, 20)]))
    segment = log.segment_path(tmp_path / "streams" / "topics" / "raw", 1)
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # flip a bit in the second batch's payloads
    segment.write_bytes(bytes(data))

    caplog.set_level(logging.WARNING, logger="lakeport.streams.embedded")
    assert asyncio.run(_produce(url, [{"n": "new"}])) == [11]
    assert any("checksum" in r.getMessage() for r in caplog.records)
    assert [m.payload["n"] for m in asyncio.run(_read_all(url, "raw"))] == [*range(10), "new"]


def test_follower_in_another_process_sees_new_messages(tmp_path: Path) -> None:
    url = (tmp_path / "streams").as_uri()
    asyncio.run(_produce(url, [{"n": 0}]))
    code = textwrap.dedent(
        """
        import asyncio, sys, time
        from lakeport import open_engine

        async def main(url):
            async with open_engine(url) as engine:
                async with engine.consumer("follower", "raw", position="end") as consumer:
                    print("ready", flush=True)
                    message = await consumer.recv(timeout=10)
                    print(message.payload["n"], flush=True)

        asyncio.run(main(sys.argv[1]))
        """
    )
    proc = _spawn(code, url)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    asyncio.run(_produce(url, [{"n": 42}]))
    assert proc.stdout.readline().strip() == "42"
    assert proc.wait(timeout=10) == 0


def test_retention_frees_disk(tmp_path: Path) -> None:
    from lakeport.streams import TopicOptions

    url = (tmp_path / "streams").as_uri()

    async def run() -> tuple[int, int]:
        async with open_engine(url) as engine:
            await engine.create_topic("raw", TopicOptions(max_size="1MiB"))
            async with engine.producer("p", "raw") as producer:
                for _ in range(40):
                    await producer.produce_many([{"pad": "x" * 100}] * 1000)
            info = await engine.topic_info("raw")
            return info.bytes, info.first_seqno

    size, first = asyncio.run(run())
    folder = tmp_path / "streams" / "topics" / "raw"
    on_disk = sum(p.stat().st_size for p in folder.glob("*.log"))
    assert first > 1
    assert on_disk == size
    assert size <= (1 << 20) + (512 << 10), f"kept {size} bytes for a 1 MiB limit"


@pytest.mark.parametrize(
    "stored",
    [
        # what an older version wrote for dedup_window=Infinity
        b'{"format":"json","persistence":"disk","max_size":null,"max_age":null,'
        b'"dedup_window":null}',
        # a max_age an older version took, which made every produce hang
        b'{"format":"json","persistence":"disk","max_size":null,"max_age":1e300,'
        b'"dedup_window":120.0}',
        b'{"format": "js',
    ],
    ids=["dedup-window-null", "max-age-1e300", "truncated"],
)
def test_an_unreadable_topic_json_does_not_break_listing_the_other_topics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stored: bytes
) -> None:
    from lakeport.errors import Invalid

    url = (tmp_path / "streams").as_uri()
    caplog.set_level(logging.WARNING, logger="lakeport.streams.embedded")

    async def run() -> list[str]:
        async with open_engine(url) as engine:
            for name in ("alpha", "broken", "zulu"):
                await engine.create_topic(name)
            (tmp_path / "streams" / "topics" / "broken" / "topic.json").write_bytes(stored)
            names = [info.name for info in await engine.list_topics()]
            broken = re.escape("topic 'broken' has a broken topic.json: ")
            with pytest.raises(Invalid, match=broken) as caught:
                await engine.topic_info("broken")
            assert "\n" not in str(caught.value)
            with pytest.raises(Invalid, match=broken):
                async with engine.producer("p", "broken"):
                    pass
            return names

    assert asyncio.run(run()) == ["alpha", "zulu"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("skipped topic 'broken'" in w and "topic.json" in w for w in warnings), warnings
