"""The recorder rides out a PostgreSQL outage: nothing is acked while the store is down, and
once it is back every reading is stored exactly once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _postgres import PrivatePostgres, private_postgres
from test_observations_recorder import wait_until

from lakeport.apps.messages import Number
from server_fixtures import platform_settings, running_platform

pytestmark = pytest.mark.slow
TOPIC = "plant-data"
START = datetime(2026, 1, 15, 8, tzinfo=UTC)


class Records(logging.Handler):
    """Keeps the warnings and errors of the recorder's logger (the server runs in a thread)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def recorder_log() -> Iterator[Records]:
    logger = logging.getLogger("lakeport.server.recorder")
    handler = Records()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def readings(first: int, count: int) -> list[object]:
    """``count`` readings of one datastream, each with a time of its own."""
    return [Number(asset="boiler-1", datastream="temperature", value=float(i), unit="C",
                   time=START + timedelta(milliseconds=i)).to_payload()
            for i in range(first, first + count)]


async def produce(url: str, payloads: list[object]) -> None:
    from lakeport.streams import open_engine

    async with open_engine(url) as engine, engine.producer("plc", TOPIC) as producer:
        for start in range(0, len(payloads), 5_000):
            await producer.produce_many(payloads[start:start + 5_000])


async def stored(server: PrivatePostgres) -> tuple[int, int]:
    """(observations, distinct (datastream, time) among them) in the private store."""
    import asyncpg

    conn = await asyncpg.connect(server.url, timeout=5)
    try:
        row = await conn.fetchrow("SELECT count(*) AS n, count(DISTINCT (datastream_id, time)) "
                                  "AS d FROM observations")
        return int(row["n"]), int(row["d"])
    finally:
        await conn.close()


async def recorder_lag(url: str) -> int | None:
    from lakeport.streams import open_engine

    async with open_engine(url) as engine:
        info = await engine.topic_info(TOPIC)
    return next((c.lag for c in info.consumers if c.name == "recorder"), None)


def test_recorder_keeps_every_reading_through_a_store_outage(
        tmp_path: Path, recorder_log: Records) -> None:
    with private_postgres() as server:
        settings = platform_settings(server.url, tmp_path, record_topics=[TOPIC])
        with running_platform(settings):
            url = settings.streams_url
            asyncio.run(produce(url, readings(0, 20_000)))
            assert wait_until(lambda: asyncio.run(stored(server))[0] > 0, 30), \
                "the recorder stored nothing"

            server.stop()
            down = time.monotonic()
            asyncio.run(produce(url, readings(20_000, 20_000)))
            # the old recorder gave up after 3 failures (about 2 s): stay down for longer
            wait_until(lambda: len(recorder_log.records) >= 6, 30)
            outage = time.monotonic() - down
            failures = len(recorder_log.records)
            assert failures >= 3, f"the recorder saw no outage ({failures} failures logged)"
            asyncio.run(produce(url, readings(40_000, 5_000)))
            lag_while_down = asyncio.run(recorder_lag(url))
            assert lag_while_down is not None and lag_while_down >= 25_000

            server.start()
            total = 45_000
            assert wait_until(lambda: asyncio.run(stored(server))[0] >= total, 60), \
                f"stored {asyncio.run(stored(server))} of {total} readings"
            assert wait_until(lambda: asyncio.run(recorder_lag(url)) == 0, 30), \
                f"recorder lag {asyncio.run(recorder_lag(url))}"
            assert asyncio.run(stored(server)) == (total, total)  # each one exactly once
        assert outage > 2.0, f"the store was down only {outage:.1f} s"
        assert any("stored seqnos" in r.getMessage() for r in recorder_log.records)


def test_errors_of_an_unreachable_or_lost_store_are_transient() -> None:
    """The errors PostgreSQL and its driver raise when the server goes away are told apart
    from an error of the statement itself."""
    import asyncpg
    import sqlalchemy as sa

    from lakeport.server.observations.recorder import transient
    from lakeport.server.store import Store

    async def caught(action: Callable[[], object]) -> BaseException:
        try:
            await action()  # type: ignore[misc]
        except Exception as exc:
            return exc
        raise AssertionError("no error")

    async def terminate(pid: int) -> None:
        admin = await asyncpg.connect(server.url, timeout=5)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()

    async def check() -> None:
        async with Store(server.url) as store:
            async with store.connect() as conn:
                assert not transient(await caught(
                    lambda: conn.execute(sa.text("SELECT 1 / 0"))))  # division by zero
            async with store.connect() as conn:  # a session ended by the server, then COPY
                raw = (await conn.get_raw_connection()).driver_connection
                await terminate(await raw.fetchval("SELECT pg_backend_pid()"))
                lost = await caught(lambda: raw.copy_records_to_table(
                    "observations", records=[(1, 0, 1.0, None)],
                    columns=["datastream_id", "time", "value_number", "value_text"]))
                assert transient(lost), repr(lost)
                await conn.invalidate()
            async with store.connect() as conn:  # the same through SQLAlchemy
                pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
                await terminate(pid)
                lost = await caught(lambda: conn.execute(sa.text("SELECT 1")))
                assert transient(lost), repr(lost)
            server.stop()
            try:
                refused = await caught(lambda: store.begin().__aenter__())
                assert transient(refused), repr(refused)
            finally:
                server.start()

    with private_postgres() as server:
        asyncio.run(check())
