"""``WS /topics/{topic}/publish``: acks once durable, in order, msg_id dedup, access, bad frames
answered on a socket that keeps working — spoken with the ``websockets`` library as a foreign
client would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from lakeport.streams import open_engine
from server_fixtures import Platform, platform_settings, running_platform


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """A server on a SQLite store (the sockets do not depend on the store kind)."""
    url = f"sqlite:///{tmp_path / 'store' / 'lakeport.db'}"
    with running_platform(platform_settings(url, tmp_path, max_body_bytes=4096)) as started:
        yield started


def publish_url(platform: Platform, topic: str, key: str) -> str:
    return platform.url.replace("http://", "ws://") + f"/api/v1/topics/{topic}/publish" \
        f"?api_key={key}"


def answer(ws: ClientConnection) -> dict[str, Any]:
    return orjson.loads(ws.recv(timeout=15))


def publish(ws: ClientConnection, request_id: Any, messages: Any, **fields: Any
            ) -> dict[str, Any]:
    ws.send(orjson.dumps({"id": request_id, "op": "publish", "messages": messages,
                          **fields}).decode())
    return answer(ws)


def read_all(platform: Platform, topic: str) -> list[Any]:
    """Every message of ``topic``, read back through the server's HTTP API."""
    async def read() -> list[Any]:
        async with open_engine(f"{platform.url}?api_key={platform.api_key}") as engine, \
                engine.consumer("check", topic, follow=False) as consumer:
            return [message async for message in consumer]

    return asyncio.run(read())


def test_publish_acks_seqnos_and_the_messages_are_readable(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/plant.temps")
    with connect(publish_url(platform, "plant.temps", platform.api_key)) as ws:
        assert publish(ws, 1, [{"t": 21.5}, [1, 2], "text"]) == \
            {"id": 1, "ok": True, "seqnos": [1, 2, 3]}
        assert publish(ws, "two", [4], keys=["pump-1"], headers={"unit": "C"}) == \
            {"id": "two", "ok": True, "seqnos": [4]}
        assert publish(ws, 3, []) == {"id": 3, "ok": True, "seqnos": []}
    messages = read_all(platform, "plant.temps")
    assert [m.payload for m in messages] == [{"t": 21.5}, [1, 2], "text", 4]
    assert (messages[3].key, messages[3].headers) == ("pump-1", {"unit": "C"})
    assert messages[0].producer == "alice"


def test_pipelined_frames_are_answered_in_order(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/t")
    with connect(publish_url(platform, "t", platform.api_key)) as ws:
        for i in range(50):
            ws.send(orjson.dumps({"id": i, "op": "publish", "messages": [i, i]}).decode())
        answers = [answer(ws) for _ in range(50)]
    assert [a["id"] for a in answers] == list(range(50))
    assert [a["seqnos"] for a in answers] == [[2 * i + 1, 2 * i + 2] for i in range(50)]
    assert [m.payload for m in read_all(platform, "t")] == [i for i in range(50) for _ in "ab"]


def test_a_msg_id_stored_before_answers_its_stored_seqno(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/t")
    with connect(publish_url(platform, "t", platform.api_key)) as ws:
        assert publish(ws, 1, ["a", "b"], msg_ids=["m-a", "m-b"])["seqnos"] == [1, 2]
        assert publish(ws, 2, ["again", "c"], msg_ids=["m-b", "m-c"])["seqnos"] == [2, 3]
    assert [m.payload for m in read_all(platform, "t")] == ["a", "b", "c"]


def test_a_user_without_produce_access_is_refused(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/t")
        bob = platform.key_for("bob")
        carol = platform.key_for("carol")
        granted = http.put("/api/v1/grants/topic/t", json={"user": "carol",
                                                          "permission": "read"})
        assert granted.status_code == 201, granted.text
    with connect(publish_url(platform, "t", bob)) as ws:
        refused = answer(ws)
    assert refused["ok"] is False and refused["error"]["code"] == "not_found"
    assert "'t'" in refused["error"]["message"]
    with connect(publish_url(platform, "t", carol)) as ws:
        refused = answer(ws)
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
    assert "produce" in refused["error"]["message"]
    with connect(publish_url(platform, "t", "lpk_0_wrong")) as ws:
        assert answer(ws)["error"]["code"] == "unauthorized"
    assert read_all(platform, "t") == []


def test_a_grant_taken_back_stops_publishing_on_an_open_socket(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/t")
        walt = platform.key_for("walt")
        assert http.put("/api/v1/grants/topic/t",
                        json={"user": "walt", "permission": "produce"}).status_code == 201
        with connect(publish_url(platform, "t", walt)) as ws:
            assert publish(ws, 1, ["ok"])["seqnos"] == [1]
            assert http.delete("/api/v1/grants/topic/t",
                               params={"user": "walt"}).status_code == 204
            refused = publish(ws, 2, ["no"])
    assert refused["ok"] is False and refused["error"]["code"] == "not_found"
    assert [m.payload for m in read_all(platform, "t")] == ["ok"]


def test_an_unknown_topic_is_refused(platform: Platform) -> None:
    with connect(publish_url(platform, "missing", platform.api_key)) as ws:
        refused = answer(ws)
    assert refused["error"]["code"] == "not_found" and "missing" in refused["error"]["message"]


def test_bad_frames_are_answered_and_the_socket_keeps_working(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/t")
    with connect(publish_url(platform, "t", platform.api_key)) as ws:
        ws.send("{not json")
        bad = answer(ws)
        assert bad["id"] is None and bad["error"]["code"] == "invalid"
        assert "not valid JSON" in bad["error"]["message"]
        ws.send("[1, 2]")
        assert "JSON object" in answer(ws)["error"]["message"]
        ws.send(orjson.dumps({"id": 7, "op": "subscribe"}).decode())
        unknown = answer(ws)
        assert unknown["id"] == 7 and "unknown op 'subscribe'" in unknown["error"]["message"]
        not_a_list = publish(ws, 8, {"a": 1})
        assert not_a_list["error"] == {"code": "invalid", "message": "messages: must be a list"}
        short = publish(ws, 9, [1, 2], msg_ids=["only-one"])
        assert "msg_ids" in short["error"]["message"]
        headers = publish(ws, 10, [1], headers={"unit": 5})
        assert "headers[0]" in headers["error"]["message"]
        too_large = publish(ws, 11, ["x" * 5000])
        assert too_large["error"]["code"] == "too_large"
        assert "max_body_bytes" in too_large["error"]["message"]
        assert publish(ws, 12, ["fine"]) == {"id": 12, "ok": True, "seqnos": [1]}
    assert [m.payload for m in read_all(platform, "t")] == ["fine"]


def test_too_many_messages_in_one_frame_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store' / 'lakeport.db'}"
    with running_platform(platform_settings(url, tmp_path)) as platform:
        with platform.client() as http:
            http.put("/api/v1/topics/t")
        with connect(publish_url(platform, "t", platform.api_key), max_size=None) as ws:
            refused = publish(ws, 1, [0] * 100_001)
            assert refused["error"]["code"] == "too_large"
            assert "at most 100000" in refused["error"]["message"]
            assert publish(ws, 2, [0] * 100_000)["seqnos"][-1] == 100_000


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
_frames = st.one_of(
    _json,
    st.fixed_dictionaries({"id": _json, "op": st.sampled_from(["publish", "close", "x"])},
                          optional={"messages": _json, "msg_ids": _json, "keys": _json,
                                    "headers": _json, "producer": _json}),
)


def test_arbitrary_frames_never_break_the_socket_nor_another_users(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/fuzz")
        http.put("/api/v1/topics/calm")
    bob = platform.key_for("bob")
    with platform.client(bob) as http:
        assert http.put("/api/v1/topics/bobs").status_code == 201
    with connect(publish_url(platform, "fuzz", platform.api_key)) as fuzzed, \
            connect(publish_url(platform, "bobs", bob)) as other:
        sent = {"n": 0}

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(frame=_frames)
        def check(frame: Any) -> None:
            fuzzed.send(json.dumps(frame))  # any JSON, big integers included
            got = answer(fuzzed)
            assert set(got) >= {"id", "ok"}
            if not got["ok"]:
                assert got["error"]["code"] in ("invalid", "too_large", "not_found"), got
            sent["n"] += 1
            assert publish(other, sent["n"], [sent["n"]])["seqnos"] == [sent["n"]]

        check()
        assert publish(fuzzed, "after", ["still open"])["ok"] is True
