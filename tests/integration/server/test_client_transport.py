"""The client's own behaviour, against a scripted transport: retries, typed errors, paging,
settings from the environment, the sync wrapper and path quoting."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from lakeport.client import Client, ClientConfig, ClientError, SyncClient
from lakeport.errors import (
    Closed,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
)

Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """A transport answering with ``handler`` and recording every request."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler
        self.transport = httpx.MockTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self, **settings: object) -> Client:
        return Client("http://lakeport.test", "lpk_test", transport=self.transport,
                      backoff=0, **settings)


def error(status: int, code: str, message: str, details: object = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message,
                                                  "details": details}})


def flaky(failures: int, status: int = 503) -> Script:
    """Answers ``status`` ``failures`` times, then 200 with ``{"count": 7}``."""
    def handler(_: httpx.Request) -> httpx.Response:
        if len(script.requests) <= failures:
            return error(status, "unavailable", "store restarting")
        return httpx.Response(200, json={"count": 7})

    script = Script(handler)
    return script


async def test_a_read_is_retried_through_two_503s() -> None:
    script = flaky(2)
    async with script.client() as client:
        assert await client.observations.count(sensor="s1") == 7
    assert len(script.requests) == 3
    assert all(r.headers["x-api-key"] == "lpk_test" for r in script.requests)


async def test_retries_give_up_with_unavailable() -> None:
    script = flaky(10, status=502)
    async with script.client(retries=2) as client:
        with pytest.raises(Unavailable) as caught:
            await client.observations.count()
    assert len(script.requests) == 3
    assert caught.value.status == 502


async def test_a_sent_insert_is_not_retried() -> None:
    script = flaky(2)
    async with script.client() as client:
        with pytest.raises(Unavailable, match="store restarting"):
            await client.observations.insert("s1", "temp", 1.5, time=0)
    assert len(script.requests) == 1


async def test_a_produce_with_msg_id_is_retried() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        if len(script.requests) == 1:
            return error(503, "unavailable", "busy")
        return httpx.Response(200, json={"seqno": 5})

    script = Script(handler)
    async with script.client() as client:
        assert await client.topics.produce("t", {"a": 1}, msg_id="m-1") == 5
    assert len(script.requests) == 2
    assert json.loads(script.requests[1].content) == {"payload": {"a": 1}, "msg_id": "m-1"}


async def test_a_post_that_never_connected_is_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if len(script.requests) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(201, json={"stored": 1, "published": 0})

    script = Script(handler)
    async with script.client() as client:
        assert await client.observations.insert("s1", "temp", 2, time=0) == {
            "stored": 1, "published": 0}
    assert len(script.requests) == 2


async def test_no_server_is_unavailable_naming_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    script = Script(handler)
    async with script.client(retries=1) as client:
        with pytest.raises(Unavailable, match=r"cannot reach the lakeport server at "
                                              r"http://lakeport.test"):
            await client.me()
    assert len(script.requests) == 2


@pytest.mark.parametrize(("status", "code", "kind"), [
    (401, "unauthorized", Unauthorized), (403, "forbidden", Forbidden),
    (404, "not_found", NotFound), (409, "conflict", Conflict), (410, "closed", Closed),
    (413, "too_large", TooLarge), (422, "invalid", Invalid),
])
async def test_error_bodies_become_typed_errors(status: int, code: str, kind: type) -> None:
    details = {"line": 3, "column": "temp"}
    script = Script(lambda _: error(status, code, f"line 3: bad {code}", details))
    async with script.client() as client:
        with pytest.raises(kind) as caught:
            await client.observations.sensors.get("pump-1")
    assert isinstance(caught.value, ClientError)
    assert str(caught.value) == f"line 3: bad {code}"
    assert (caught.value.status, caught.value.code, caught.value.details) == (
        status, code, details)
    assert len(script.requests) == 1


async def test_a_server_error_names_the_request() -> None:
    script = Script(lambda _: error(500, "internal", "internal server error"))
    async with script.client() as client:
        with pytest.raises(ClientError, match="server error 500 on GET /api/v1/counts"):
            await client.observations.counts()


async def test_iterators_follow_cursors_and_stop_at_the_limit() -> None:
    names = [f"s{i}" for i in range(7)]

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("cursor") or 0)
        size = int(request.url.params["limit"])
        end = min(start + size, len(names))
        return httpx.Response(200, json={
            "items": [{"name": n} for n in names[start:end]],
            "next_cursor": str(end) if end < len(names) else None})

    script = Script(handler)
    async with script.client() as client:
        every = [s["name"] async for s in client.observations.sensors.iter(page_size=3)]
        assert every == names
        assert len(script.requests) == 3
        some = await client.observations.sensors.list(limit=4, page_size=3)
        assert [s["name"] for s in some] == names[:4]
        assert [int(r.url.params["limit"]) for r in script.requests[3:]] == [3, 1]
        page = await client.observations.sensors.page(limit=5)
        assert len(page.items) == 5 and page.next_cursor == "5"


def test_the_sync_client_blocks_and_iterates() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/me"):
            return httpx.Response(200, json={"user": "alice"})
        return httpx.Response(200, json={"items": [{"name": "a"}, {"name": "b"}],
                                         "next_cursor": None})

    script = Script(handler)
    with SyncClient("http://lakeport.test", "lpk_test", transport=script.transport) as client:
        assert client.me() == "alice"
        assert [f["name"] for f in client.observations.features.iter()] == ["a", "b"]
        table = client.observations.features.list(format="table")
        assert "name" in table and "| a" in table
    assert client.client.config.url == "http://lakeport.test"


async def test_paths_reach_the_server_as_written() -> None:
    script = Script(lambda _: httpx.Response(200, json={"path": "x"}))
    async with script.client() as client:
        await client.datalake.info("../x")
        await client.datalake.info("dir/a b.csv")
    assert script.requests[0].url.raw_path == b"/api/v1/info/%2E%2E/x"
    assert script.requests[1].url.raw_path == b"/api/v1/info/dir/a%20b.csv"


def test_from_env_prefers_variables_over_the_config_file(
        lakeport_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKEPORT_URL", raising=False)
    monkeypatch.delenv("LAKEPORT_API_KEY", raising=False)
    (lakeport_home / "client.json").write_text(
        json.dumps({"url": "http://file.test:8400", "api_key": "lpk_file"}))
    config = ClientConfig.from_env()
    assert (config.url, config.key()) == ("http://file.test:8400", "lpk_file")
    monkeypatch.setenv("LAKEPORT_API_KEY", "lpk_env")
    assert Client.from_env().config.key() == "lpk_env"
    monkeypatch.setenv("LAKEPORT_URL", "http://env.test:1")
    assert Client.from_env(timeout=5).config.url == "http://env.test:1"
    assert "lpk_env" not in repr(ClientConfig.from_env())


def test_a_broken_config_file_names_itself(
        lakeport_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKEPORT_URL", raising=False)
    (lakeport_home / "client.json").write_text('{"url": "http://x", "api_kee": "lpk"}')
    with pytest.raises(Invalid, match=r"client\.json: api_kee"):
        ClientConfig.from_env()


async def test_a_dataframe_without_pandas_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    script = Script(lambda _: httpx.Response(200, json={"features": 1, "sensors": 2}))
    monkeypatch.setitem(sys.modules, "pandas", None)
    async with script.client() as client:
        with pytest.raises(Invalid, match="pip install pandas"):
            await client.observations.counts(format="dataframe")
        with pytest.raises(Invalid, match="use json, table, dataframe or polars"):
            await client.observations.counts(format="excel")  # type: ignore[arg-type]
