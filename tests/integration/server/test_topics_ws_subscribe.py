"""``WS /topics/subscribe?pattern=...``: the messages of the matching topics a user may read,
topics created later included — spoken with the ``websockets`` library as a foreign client
would."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from websockets.sync.client import ClientConnection, connect

from lakeport.server.topics.socket_subscribe import Pattern
from server_fixtures import Platform, platform_settings, running_platform
from waiting import wait_until

TEMPERATURES = "sensors.*.temperature"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """A server on a SQLite store (the sockets do not depend on the store kind)."""
    url = f"sqlite:///{tmp_path / 'store' / 'lakeport.db'}"
    with running_platform(platform_settings(url, tmp_path)) as started:
        yield started


def subscribe(platform: Platform, pattern: str, key: str, position: str | None = None
              ) -> ClientConnection:
    url = platform.url.replace("http://", "ws://") + \
        f"/api/v1/topics/subscribe?pattern={quote(pattern, safe='')}&api_key={key}"
    return connect(url if position is None else f"{url}&position={position}")


@contextlib.contextmanager
def subscribed(platform: Platform, pattern: str, key: str, position: str | None = None
               ) -> Iterator[ClientConnection]:
    """A subscription that stands (its first frame came)."""
    with subscribe(platform, pattern, key, position) as ws:
        first = next_frame(ws)
        assert first == {"ok": True, "pattern": pattern, "position": position or "end"}, first
        yield ws


def next_frame(ws: ClientConnection) -> dict[str, Any]:
    return orjson.loads(ws.recv(timeout=15))


def frames_until(ws: ClientConnection, last: tuple[str, Any]) -> list[tuple[str, Any]]:
    """``(topic, data)`` of the frames up to the one of ``last``."""
    got: list[tuple[str, Any]] = []
    while not got or got[-1] != last:
        frame = next_frame(ws)
        assert set(frame) == {"topic", "seqno", "time", "key", "data"}, frame
        got.append((frame["topic"], frame["data"]))
    return got


def produce(http: httpx.Client, topic: str, *payloads: Any) -> None:
    answer = http.post(f"/api/v1/topics/{topic}/messages/batch", json={"payloads": payloads})
    assert answer.status_code == 200, answer.text


def create(http: httpx.Client, *topics: str) -> None:
    for topic in topics:
        assert http.put(f"/api/v1/topics/{topic}").status_code == 201


def test_patterns_match_words() -> None:
    star, hashes = Pattern(TEMPERATURES), Pattern("sensors.#")
    assert star.matches("sensors.a.temperature") and star.matches("sensors.b.temperature")
    assert not star.matches("sensors.a.pressure")
    assert not star.matches("sensors.a.b.temperature") and not star.matches("sensors.temperature")
    assert hashes.matches("sensors") and hashes.matches("sensors.a.b.temperature")
    assert not hashes.matches("plant.sensors")
    middle = Pattern("sensors.#.temperature")
    assert middle.matches("sensors.temperature") and middle.matches("sensors.a.b.temperature")
    assert not middle.matches("sensors.a.pressure")
    assert Pattern("#").matches("anything.at.all") and Pattern("#.#.x").matches("x")
    for bad in ("", "a..b", "a.b*", "a/b", "a.#x"):
        with pytest.raises(Exception, match="bad pattern"):
            Pattern(bad)


def test_star_matches_one_word_from_the_end(platform: Platform) -> None:
    topics = ("sensors.a.temperature", "sensors.b.temperature", "sensors.a.pressure",
              "sensors.a.b.temperature")
    with platform.client() as http:
        create(http, *topics)
        for topic in topics:
            produce(http, topic, "before")
        with subscribed(platform, TEMPERATURES, platform.api_key) as ws:
            for topic in topics:
                produce(http, topic, {"from": topic})
            produce(http, "sensors.a.temperature", "done a")
            produce(http, "sensors.b.temperature", "done b")
            got = frames_until(ws, ("sensors.a.temperature", "done a"))
            if ("sensors.b.temperature", "done b") not in got:
                got += frames_until(ws, ("sensors.b.temperature", "done b"))
    by_topic: dict[str, list[Any]] = {}
    for topic, data in got:
        by_topic.setdefault(topic, []).append(data)
    assert by_topic == {"sensors.a.temperature": [{"from": "sensors.a.temperature"}, "done a"],
                        "sensors.b.temperature": [{"from": "sensors.b.temperature"}, "done b"]}


def test_hash_matches_any_words_and_earliest_reads_stored_messages(platform: Platform) -> None:
    with platform.client() as http:
        create(http, "sensors", "sensors.a.b.temperature", "plant.x")
        produce(http, "sensors", 1)
        produce(http, "sensors.a.b.temperature", 2)
        produce(http, "plant.x", 3)
        with subscribed(platform, "sensors.#", platform.api_key, "earliest") as ws:
            first, second = next_frame(ws), next_frame(ws)
            produce(http, "plant.x", "not this")
            produce(http, "sensors", "last")
            rest = frames_until(ws, ("sensors", "last"))
    assert sorted([(first["topic"], first["data"]), (second["topic"], second["data"])]) == \
        [("sensors", 1), ("sensors.a.b.temperature", 2)]
    assert first["seqno"] == second["seqno"] == 1 and first["time"].endswith("Z")
    assert rest == [("sensors", "last")]


def test_a_topic_created_after_subscribing_is_delivered(platform: Platform) -> None:
    with platform.client() as http, subscribed(platform, TEMPERATURES, platform.api_key) as ws:
        create(http, "sensors.new.temperature", "sensors.new.pressure")
        produce(http, "sensors.new.pressure", "no")
        produce(http, "sensors.new.temperature", "first", "second")
        got = frames_until(ws, ("sensors.new.temperature", "second"))
    assert got == [("sensors.new.temperature", "first"), ("sensors.new.temperature", "second")]


def test_a_topic_the_user_may_not_read_is_never_sent(platform: Platform) -> None:
    bob = platform.key_for("bob")
    with platform.client() as alice, platform.client(bob) as bobs:
        create(bobs, "sensors.secret.temperature")
        produce(bobs, "sensors.secret.temperature", "secret")
        with subscribed(platform, TEMPERATURES, platform.api_key, "earliest") as ws:
            # a topic alice makes after bob's is found by a later look at the topic list,
            # which saw bob's topic as well
            create(alice, "sensors.mine.temperature")
            produce(alice, "sensors.mine.temperature", "mine")
            got = frames_until(ws, ("sensors.mine.temperature", "mine"))
            assert got == [("sensors.mine.temperature", "mine")]
            granted = bobs.put("/api/v1/grants/topic/sensors.secret.temperature",
                               json={"user": "alice", "permission": "read"})
            assert granted.status_code == 201, granted.text
            shared = frames_until(ws, ("sensors.secret.temperature", "secret"))
    assert shared == [("sensors.secret.temperature", "secret")]


def test_the_consumers_go_with_the_socket(platform: Platform) -> None:
    with platform.client() as http:
        create(http, "sensors.a.temperature")
        with subscribed(platform, TEMPERATURES, platform.api_key) as ws:
            produce(http, "sensors.a.temperature", "x")
            assert frames_until(ws, ("sensors.a.temperature", "x"))
            consumers = http.get("/api/v1/topics/sensors.a.temperature").json()["consumers"]
            assert [c["name"].startswith("subscribe.") for c in consumers] == [True]
            ws.send(orjson.dumps({"id": 1, "op": "fetch"}).decode())
            refused = next_frame(ws)
            assert refused["id"] == 1 and "only close" in refused["error"]["message"]

        def no_consumers() -> bool:
            info = http.get("/api/v1/topics/sensors.a.temperature").json()
            return info["consumers"] == []

        assert wait_until(no_consumers), "the subscription's consumer closed with the socket"


def test_many_messages_arrive_in_order(platform: Platform) -> None:
    with platform.client() as http:
        create(http, "sensors.a.temperature")
        with subscribed(platform, TEMPERATURES, platform.api_key) as ws:
            for start in range(0, 3000, 1000):
                produce(http, "sensors.a.temperature", *range(start, start + 1000))
            got = frames_until(ws, ("sensors.a.temperature", 2999))
    assert [data for _, data in got] == list(range(3000))


def test_bad_subscriptions_are_refused(platform: Platform) -> None:
    for pattern, position, expected in (("a/b", None, "bad pattern"),
                                        ("a.*", "middle", "bad position 'middle'")):
        with subscribe(platform, pattern, platform.api_key, position) as ws:
            refused = next_frame(ws)
        assert refused["ok"] is False and refused["error"]["code"] == "invalid"
        assert expected in refused["error"]["message"]
    with subscribe(platform, "a.*", "lpk_0_wrong") as ws:
        assert next_frame(ws)["error"]["code"] == "unauthorized"


def test_a_client_that_does_not_read_holds_its_subscription_back(platform: Platform) -> None:
    """The server reads on only as frames leave it: while the client reads nothing, the
    subscription's consumer stops short of the end; once it reads, everything arrives."""
    big = "x" * 5_000
    # a small receive window and no compression: the server's sends back up soon
    small = socket.socket()
    small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    small.connect(("127.0.0.1", int(platform.url.rsplit(":", 1)[1])))
    url = platform.url.replace("http://", "ws://") + \
        f"/api/v1/topics/subscribe?pattern={TEMPERATURES}&api_key={platform.api_key}"
    with platform.client() as http:
        create(http, "sensors.a.temperature")
        with connect(url, sock=small, max_queue=4, compression=None) as ws:
            assert next_frame(ws)["ok"] is True
            for start in range(0, 2000, 1000):
                produce(http, "sensors.a.temperature",
                        *({"n": n, "pad": big} for n in range(start, start + 1000)))

            def acked() -> int:
                info = http.get("/api/v1/topics/sensors.a.temperature").json()
                return next((c["acked"] for c in info["consumers"]), 0)

            assert not wait_until(lambda: acked() == 2000, 3), \
                "the server read the whole topic for a client that reads nothing"
            numbers = [next_frame(ws)["data"]["n"] for _ in range(2000)]
            assert numbers == list(range(2000))
            assert wait_until(lambda: acked() == 2000), "the subscription caught up"
