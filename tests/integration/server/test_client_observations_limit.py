"""``query(limit=N, format="dataframe" | "polars")`` fetches only N observations from a real
server (counted on the wire), and gives the same frame as the first N rows of the whole range."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import httpx
import pytest

from lakeport.client import Client
from server_fixtures import Platform

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms
STORED = 20_000


class _Counted(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, meter: Metered) -> None:
        self.stream, self.meter = stream, meter

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            self.meter.received += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


class Metered(httpx.AsyncBaseTransport):
    """The network transport, counting the requests sent and the answer bytes received."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.received = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self.inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Counted(response.stream, self)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def reset(self) -> None:
        self.requests.clear()
        self.received = 0


async def _fill(client: Client) -> None:
    await client.observations.properties.create("temp", data_type="number")
    await client.observations.properties.create("state", data_type="string")
    await client.observations.properties.create("on", data_type="boolean")
    await client.observations.sensors.create("s1")
    rows = [[T0 + i * 1000, float(i), "on" if i % 3 else "off", i % 2 == 0]
            for i in range(STORED)]
    answer = await client.observations.insert_batch("s1", ["time", "temp", "state", "on"], rows)
    assert answer["stored"] == 3 * STORED


@pytest.mark.parametrize("fmt", ["dataframe", "polars"])
async def test_a_limited_frame_query_fetches_only_the_limit(platform: Platform,
                                                            fmt: str) -> None:
    meter = Metered()
    async with Client(platform.url, platform.api_key, transport=meter) as client:
        await _fill(client)
        meter.reset()
        frame = await client.observations.query("s1", "temp", order="desc", limit=5,
                                                format=fmt)
        assert list(frame["value"]) == [float(STORED - 1 - i) for i in range(5)]
        sent = [parse_qs(r.url.query.decode()) for r in meter.requests]
        assert sent == [{"sensor": ["s1"], "property": ["temp"], "order": ["desc"],
                         "limit": ["5"]}]
        assert meter.received < 2_000, f"{meter.received} bytes received for 5 observations"

        meter.reset()
        whole = await client.observations.query("s1", "temp", format=fmt)
        assert len(whole) == STORED and meter.received > 50 * 2_000


async def test_a_limited_frame_equals_the_head_of_the_whole_range(platform: Platform) -> None:
    import pandas as pd

    async with Client(platform.url, platform.api_key) as client:
        await _fill(client)
        for prop in ("temp", "state", "on"):
            whole = await client.observations.query("s1", prop, format="dataframe")
            head = await client.observations.query("s1", prop, limit=12_345,
                                                   format="dataframe")
            assert str(head["time"].dtype) == "datetime64[ms, UTC]"
            pd.testing.assert_frame_equal(head, whole.head(12_345))
        assert len(await client.observations.query("s1", limit=0, format="dataframe")) == 0
