"""Topics over HTTP and WebSocket: admin, produce, consume frames, keys and bad input."""

from __future__ import annotations

import asyncio
import base64
import socket
import time

import orjson
import pytest
from websockets.sync.client import connect

from lakeport.errors import Conflict, Unauthorized, Unavailable
from lakeport.streams import open_engine
from server_fixtures import Platform


def ws_url(platform: Platform, topic: str, key: str | None = None) -> str:
    url = platform.url.replace("http://", "ws://") + f"/api/v1/topics/{topic}/consume"
    return url if key is None else f"{url}?api_key={key}"


def call(ws, request_id: int, op: str, **fields) -> dict:
    ws.send(orjson.dumps({"id": request_id, "op": op, **fields}).decode())
    while True:
        answer = orjson.loads(ws.recv(timeout=15))
        if answer["id"] == request_id:
            return answer


def test_topic_admin_routes(platform: Platform) -> None:
    with platform.client() as http:
        created = http.put("/api/v1/topics/plant.temps", json={"format": "string",
                                                               "max_age": "1h"})
        assert created.status_code == 201
        assert created.json()["format"] == "string"
        assert created.json()["max_age"] == 3600
        same = http.put("/api/v1/topics/plant.temps", json={"format": "string", "max_age": 3600})
        assert same.status_code == 200
        other = http.put("/api/v1/topics/plant.temps", json={"format": "bytes"})
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "conflict"
        assert http.put("/api/v1/topics/plant.temps", json={"format": "bytes"},
                        params={"if_exists": "ok"}).json()["format"] == "string"
        assert http.put("/api/v1/topics/plant.temps",
                        params={"if_exists": "fail"}).status_code == 409
        assert http.put("/api/v1/topics/defaults").json()["format"] == "json"
        names = [item["name"] for item in http.get("/api/v1/topics").json()["items"]]
        assert names == ["defaults", "plant.temps"]
        info = http.get("/api/v1/topics/plant.temps").json()
        assert (info["last_seqno"], info["entries"], info["consumers"]) == (0, 0, [])
        assert http.delete("/api/v1/topics/plant.temps").status_code == 204
        gone = http.get("/api/v1/topics/plant.temps")
        assert gone.status_code == 404
        assert "plant.temps" in gone.json()["error"]["message"]
        assert http.delete("/api/v1/topics/plant.temps").status_code == 404


def test_produce_single_and_batch(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/readings")
        one = http.post("/api/v1/topics/readings/messages",
                        json={"payload": {"temp": 21.5}, "headers": {"unit": "C"},
                              "key": "pump-1", "msg_id": "r-1", "producer": "gw.1"})
        assert one.status_code == 200 and one.json() == {"seqno": 1}
        again = http.post("/api/v1/topics/readings/messages",
                          json={"payload": {"temp": 99}, "msg_id": "r-1"})
        assert again.json() == {"seqno": 1}
        batch = http.post("/api/v1/topics/readings/messages/batch",
                          json={"payloads": [{"n": 1}, [1, 2], "text"],
                                "msg_ids": ["b-1", "b-2", "r-1"]})
        assert batch.json() == {"seqnos": [2, 3, 1]}
        mixed = http.post("/api/v1/topics/readings/messages/batch",
                          json={"payloads": [1, 2], "keys": [None, "k"],
                                "headers": [{"a": "b"}, None]})
        assert mixed.json() == {"seqnos": [4, 5]}
        assert http.get("/api/v1/topics/readings").json()["last_seqno"] == 5

    async def read() -> list:
        async with open_engine(f"{platform.url}?api_key={platform.api_key}") as engine, \
                engine.consumer("check", "readings", follow=False) as consumer:
            return [message async for message in consumer]

    messages = asyncio.run(read())
    assert [m.payload for m in messages] == [{"temp": 21.5}, {"n": 1}, [1, 2], 1, 2]
    first = messages[0]
    assert (first.producer, first.headers, first.key) == ("gw.1", {"unit": "C"}, "pump-1")
    assert messages[1].producer == "alice"  # the key's user when no producer is named
    assert (messages[3].headers, messages[3].key) == ({"a": "b"}, None)
    assert (messages[4].headers, messages[4].key) == (None, "k")


def test_text_and_bytes_topics_take_strings_and_base64(platform: Platform) -> None:
    blob = bytes(range(256))
    with platform.client() as http:
        http.put("/api/v1/topics/raw", json={"format": "bytes"})
        http.put("/api/v1/topics/lines", json={"format": "string"})
        encoded = base64.b64encode(blob).decode()
        assert http.post("/api/v1/topics/raw/messages",
                         json={"payload": {"base64": encoded}}).json() == {"seqno": 1}
        assert http.post("/api/v1/topics/lines/messages/batch",
                         json={"payloads": ["grüne Zeile", {"base64": "b2s="}]}
                         ).json() == {"seqnos": [1, 2]}
        for topic, payload in (("lines", 12), ("raw", {"not": "base64"}),
                               ("raw", {"base64": "***"}), ("lines", {"base64": "//4="})):
            bad = http.post(f"/api/v1/topics/{topic}/messages", json={"payload": payload})
            assert bad.status_code == 422, (topic, payload)
            assert bad.json()["error"]["code"] == "invalid"
        assert http.get("/api/v1/topics/lines").json()["last_seqno"] == 2

    async def read(topic: str) -> list:
        async with open_engine(f"{platform.url}?api_key={platform.api_key}") as engine, \
                engine.consumer("check", topic, follow=False) as consumer:
            return [message.payload async for message in consumer]

    assert asyncio.run(read("raw")) == [blob]
    assert asyncio.run(read("lines")) == ["grüne Zeile", "ok"]


def test_requests_without_a_key_get_401(platform: Platform) -> None:
    with platform.client(None) as http:
        answers = [http.get("/api/v1/topics"), http.put("/api/v1/topics/t"),
                   http.get("/api/v1/topics/t"), http.delete("/api/v1/topics/t"),
                   http.post("/api/v1/topics/t/messages", json={"payload": 1}),
                   http.post("/api/v1/topics/t/messages/batch", json={"payloads": [1]})]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"
    with connect(ws_url(platform, "t")) as ws:
        answer = orjson.loads(ws.recv(timeout=15))
    assert answer["ok"] is False and answer["error"]["code"] == "unauthorized"

    async def with_a_bad_key() -> None:
        async with open_engine(f"{platform.url}?api_key=lpk_0_wrong"):
            pytest.fail("an engine with a wrong key opened")

    with pytest.raises(Unauthorized, match="API key"):
        asyncio.run(with_a_bad_key())

    async def without_a_server() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            async with open_engine(f"{url}?api_key={platform.api_key}"):
                pytest.fail("an engine without a server opened")

    with pytest.raises(Unavailable, match="cannot reach the lakeport server at http://127"):
        asyncio.run(without_a_server())


def test_unknown_topic_is_404_and_bad_input_is_422(platform: Platform) -> None:
    with platform.client() as http:
        for answer in (http.get("/api/v1/topics/nope"),
                       http.post("/api/v1/topics/nope/messages", json={"payload": 1}),
                       http.post("/api/v1/topics/nope/messages/batch", json={"payloads": [1]})):
            assert answer.status_code == 404
            assert "'nope'" in answer.json()["error"]["message"]
        http.put("/api/v1/topics/t")
        bad = [
            http.post("/api/v1/topics/t/messages", content=b"{not json"),
            http.post("/api/v1/topics/t/messages", json=[1]),
            http.post("/api/v1/topics/t/messages", json={"headers": {}}),
            http.post("/api/v1/topics/t/messages", json={"payload": 1, "headers": {"a": 1}}),
            http.post("/api/v1/topics/t/messages", json={"payload": 1, "producer": "a b"}),
            http.post("/api/v1/topics/t/messages/batch", json={"payloads": {"a": 1}}),
            http.post("/api/v1/topics/t/messages/batch",
                      json={"payloads": [1, 2], "msg_ids": ["x"]}),
            http.put("/api/v1/topics/t2", json={"format": "xml"}),
            http.put("/api/v1/topics/t2", json={"colour": "red"}),
            http.put("/api/v1/topics/bad*name"),
        ]
        for answer in bad:
            assert answer.status_code == 422, answer.request.content
            error = answer.json()["error"]
            assert error["code"] == "invalid" and error["message"]
        assert http.get("/api/v1/topics/t").json()["last_seqno"] == 0
        assert http.get("/api/v1/topics/t2").status_code == 404


def test_consume_frames(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/t")
        http.post("/api/v1/topics/t/messages/batch",
                  json={"payloads": [{"n": 1}, {"n": 2}, {"n": 3}]})
    with connect(ws_url(platform, "t", platform.api_key)) as ws:
        opened = call(ws, 0, "open", name="reader", mode="exclusive", position="beginning")
        assert opened == {"id": 0, "ok": True, "acked": 0, "read_upto": 0, "format": "json"}
        fetched = call(ws, 1, "fetch", max_n=2, timeout=5)
        assert fetched["ok"] and fetched["messages"]["seqno"] == [1, 2]
        assert [orjson.loads(d) for d in fetched["messages"]["data"]] == [{"n": 1}, {"n": 2}]
        assert call(ws, 2, "ack", seqno=2) == {"id": 2, "ok": True, "acked": 2}
        assert call(ws, 3, "lag")["lag"] == 1
        assert call(ws, 4, "last_seqno")["seqno"] == 3
        unknown = call(ws, 5, "jump")
        assert unknown["ok"] is False and unknown["error"]["code"] == "invalid"
        with connect(ws_url(platform, "t", platform.api_key)) as second:
            refused = call(second, 0, "open", name="reader", mode="exclusive")
            assert refused["ok"] is False and refused["error"]["code"] == "conflict"
        assert call(ws, 6, "close") == {"id": 6, "ok": True}


def test_a_dropped_socket_frees_its_exclusive_consumer(platform: Platform) -> None:
    with platform.client() as http:
        http.put("/api/v1/topics/t")
    with connect(ws_url(platform, "t", platform.api_key)) as ws:
        assert call(ws, 0, "open", name="app", mode="exclusive")["ok"]
    # the socket is gone without a close request, as when the app dies

    async def reopen() -> int:
        async with open_engine(f"{platform.url}?api_key={platform.api_key}") as engine:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with engine.consumer("app", "t") as consumer:
                        return consumer.acked
                except Conflict:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)

    assert asyncio.run(reopen()) == 0
