"""The recorder stores the SOS JSON of a sensor: one observation per named observation (of its
feature, else of the sensor), bad messages to the dead-letter topic with why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from lakeport.errors import NotFound
from lakeport.streams import Format, TopicOptions, open_engine
from server_fixtures import platform_settings, running_platform
from waiting import wait_until

API = "/api/v1"
TOPIC = "sos-data"
SOS = [
    {"sensor": "s1", "feature": "f1", "observations": {"temp": 21.5, "state": "ok"},
     "time": "2026-01-15T08:00:00Z"},
    {"sensor": "s1", "observations": {"temp": 22.0}, "time": "2026-01-15T08:01:00Z"},
    {"asset": "pump-1", "datastream": "temp", "value": 3.0, "time": "2026-01-15T08:02:00Z"},
]
BAD = [
    (b'{"sensor": "s1", "observations": {"temp": 1}, "extra": 1}',
     "not SOS JSON: unknown key 'extra'"),
    (b'{"sensor": "s1", "observations": []}', "not SOS JSON: expected"),
    (b'{"sensor": "s 1", "observations": {"temp": 1, "rpm": 2}}',
     "asset 's 1' is not a valid name"),
    (b'{"sensor": "s1", "feature": "f 1", "observations": {"temp": 1}}',
     "feature 'f 1' is not a valid name"),
    (b'{"sensor": "s1", "feature": 7, "observations": {"temp": 1}}',
     "feature is not a non-empty string"),
]


async def produce(url: str, payloads: list[bytes]) -> None:
    async with open_engine(url) as engine:
        await engine.create_topic(TOPIC, TopicOptions(format=Format.BYTES))
        async with engine.producer("plc", TOPIC) as producer:
            await producer.produce_many(payloads)


async def letters(url: str) -> list[tuple[bytes, str]]:
    async with open_engine(url) as engine:
        try:
            async with engine.consumer("check", f"dead-letter.recorder.{TOPIC}",
                                       position="beginning", follow=False) as consumer:
                return [(m.data, (m.headers or {})["dead-letter-reason"])
                        async for m in consumer]
        except NotFound:
            return []


def test_sos_messages_become_observations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store' / 'lakeport.db'}"
    settings = platform_settings(url, tmp_path, record_topics=[TOPIC])
    payloads = [orjson.dumps(SOS[0]), BAD[0][0], orjson.dumps(SOS[1]), BAD[1][0],
                orjson.dumps(SOS[2]), *(raw for raw, _ in BAD[2:])]
    asyncio.run(produce(settings.streams_url, payloads))
    with running_platform(settings) as platform, platform.client() as http:
        dead: list[tuple[bytes, str]] = []

        def settled() -> bool:
            dead[:] = asyncio.run(letters(settings.streams_url))
            return len(dead) >= len(BAD) and \
                http.get(f"{API}/counts").json()["observations"] >= 4

        assert wait_until(settled, 30), dead
        temps = http.get(f"{API}/observations",
                         params={"sensor": "s1", "property": "temp"}).json()["items"]
        assert [(o["time"], o["value"]) for o in temps] == [
            ("2026-01-15T08:00:00.000Z", 21.5), ("2026-01-15T08:01:00.000Z", 22.0)]
        state = http.get(f"{API}/observations/latest",
                         params={"sensor": "s1", "property": "state"}).json()["items"]
        assert [(o["feature"], o["value"]) for o in state] == [("f1", "ok")]
        assert [o["feature"] for o in temps] == ["f1", "s1"]  # no feature: the sensor
        assert http.get(f"{API}/properties/state").json()["data_type"] == "string"
        assert http.get(f"{API}/counts").json()["observations"] == 4
    assert [data for data, _ in dead] == [raw for raw, _ in BAD]
    for (_, reason), (_, expected) in zip(dead, BAD, strict=True):
        assert reason.startswith(expected), reason
