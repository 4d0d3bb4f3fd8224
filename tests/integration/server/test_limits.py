"""The server's limits, on SQLite and PostgreSQL: request bodies per route (checked after the
API key, before any parsing), request heads in bytes and in time, the errors the HTTP layer
answers itself (all JSON error bodies), and fetch replies of WebSocket consumers in bytes."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.sync.client import connect

from lakeport.streams import open_engine
from server_fixtures import Platform, platform_settings, running_platform

API = "/api/v1"
KiB = 1 << 10
MiB = 1 << 20


# -- raw HTTP -----------------------------------------------------------------------------
def port_of(platform: Platform) -> int:
    return int(platform.url.rsplit(":", 1)[1])


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def error(self) -> dict:
        assert self.headers.get("content-type") == "application/json", self.headers
        error = orjson.loads(self.body)["error"]
        assert set(error) == {"code", "message", "details"}
        return error


def read_answer(sock: socket.socket, deadline: float) -> Answer:
    """One HTTP answer from ``sock``; AssertionError when none comes before ``deadline``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock, deadline)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, value in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        body += _recv(sock, deadline)
    return Answer(int(lines[0].split()[1]), headers, body[:length])


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        chunk = sock.recv(1 << 16)
    except TimeoutError:
        raise AssertionError("no answer before the deadline") from None
    if not chunk:
        raise AssertionError("the server closed the connection without an answer")
    return chunk


def closed(sock: socket.socket, deadline: float) -> bool:
    """True once the server closed ``sock`` (before ``deadline``), its data read."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 16):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def exchange(platform: Platform, request: bytes, wait: float = 10) -> Answer:
    with socket.create_connection(("127.0.0.1", port_of(platform))) as sock:
        sock.sendall(request)
        return read_answer(sock, time.monotonic() + wait)


def head(method: str, path: str, *lines: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *lines, "", ""]).encode()


def chunks(total: int, size: int = 64 * KiB, fill: bytes = b"x") -> Iterator[bytes]:
    for start in range(0, total, size):
        yield fill * min(size, total - start)


@pytest.fixture
def limited(store_url: str, tmp_path: Path) -> Iterator[Platform]:
    """A server with small limits."""
    settings = platform_settings(store_url, tmp_path, max_body_bytes=64 * KiB,
                                 max_upload_bytes="1MiB", max_csv_bytes=256 * KiB,
                                 header_timeout=1.0, body_timeout=1.0)
    with running_platform(settings) as started:
        yield started


@pytest.fixture
def small_fetches(store_url: str, tmp_path: Path) -> Iterator[Platform]:
    """A server whose fetch replies hold 256 KiB of payloads at most."""
    with running_platform(platform_settings(store_url, tmp_path,
                                            max_fetch_bytes="256KiB")) as started:
        yield started


# -- request bodies -----------------------------------------------------------------------
def test_a_body_without_a_key_is_refused_before_it_is_read(platform: Platform) -> None:
    request = head("POST", f"{API}/sensors", "Content-Type: application/json",
                   f"Content-Length: {300_000_000}")
    with socket.create_connection(("127.0.0.1", port_of(platform))) as sock:
        sock.sendall(request + b"{" + b" " * (64 * KiB))
        answer = read_answer(sock, time.monotonic() + 10)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == "ApiKey"
    assert answer.error()["code"] == "unauthorized"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the HTTP layer only
def test_a_body_answered_unread_is_discarded_for_a_while_then_closed(platform: Platform
                                                                      ) -> None:
    from lakeport.server.protocols import LINGER_SECONDS

    request = head("PUT", f"{API}/files/endless.bin", f"Content-Length: {2 << 40}")
    with socket.create_connection(("127.0.0.1", port_of(platform))) as sock:
        sock.sendall(request)
        assert read_answer(sock, time.monotonic() + 10).status == 401
        answered = time.monotonic()
        deadline = answered + LINGER_SECONDS + 5
        gone = False
        while not gone and time.monotonic() < deadline:
            try:
                sock.sendall(b"x" * (64 * KiB))  # the body goes on, 64 kB each 50 ms at most
                if select.select([sock], [], [], 0.05)[0]:
                    gone = sock.recv(1 << 16) == b""
            except (BrokenPipeError, ConnectionResetError):
                gone = True
        assert gone, "the connection still takes the body of an answered request"
        assert time.monotonic() - answered >= LINGER_SECONDS - 0.5


@pytest.mark.parametrize(("method", "path", "declared", "where"), [
    ("POST", f"{API}/sensors", 100 * MiB, "max_body_bytes, lakeport serve --max-body"),
    ("POST", f"{API}/observations/csv", 300 * MiB, "max_csv_bytes, lakeport serve --max-csv"),
    ("PUT", f"{API}/files/huge.bin", 2 << 40, "max_upload_bytes, lakeport serve --max-upload"),
], ids=["json", "csv", "upload"])
def test_a_declared_body_over_the_limit_is_413_at_once(platform: Platform, method: str,
                                                        path: str, declared: int,
                                                        where: str) -> None:
    answer = exchange(platform, head(method, path, f"x-api-key: {platform.api_key}",
                                     f"Content-Length: {declared}"))
    assert answer.status == 413
    error = answer.error()
    assert error["code"] == "too_large"
    assert f"{declared} bytes" in error["message"] and f"({where})" in error["message"]


def test_streamed_bodies_over_the_limit_are_413_and_never_stored(limited: Platform) -> None:
    with limited.client() as http:
        big = http.put(f"{API}/files/big.bin", content=chunks(3 * MiB))
        assert big.status_code == 413, big.text
        assert big.json()["error"]["code"] == "too_large"
        assert "limit 1048576 bytes (max_upload_bytes" in big.json()["error"]["message"]
        assert http.get(f"{API}/files/big.bin").status_code == 404

        assert http.put(f"{API}/files/small.bin", content=chunks(512 * KiB)).status_code == 201
        appended = http.post(f"{API}/files/small.bin", params={"op": "append"},
                             content=chunks(2 * MiB, fill=b"y"))
        assert appended.status_code == 413
        assert http.get(f"{API}/files/small.bin").content == b"x" * (512 * KiB)

        csv = http.post(f"{API}/observations/csv", params={"sensor": "s"},
                        content=chunks(512 * KiB, fill=b"1"))
        assert csv.status_code == 413
        assert "(max_csv_bytes, lakeport serve --max-csv)" in csv.json()["error"]["message"]

        batch = http.post(f"{API}/observations/batch", content=chunks(128 * KiB, fill=b" "))
        assert batch.status_code == 413
        assert "(max_body_bytes, lakeport serve --max-body)" in batch.json()["error"]["message"]
        assert http.get(f"{API}/me").json() == {"user": "alice"}


def test_health_openapi_and_docs_need_no_key(platform: Platform) -> None:
    with platform.client(key=None) as http:
        for path in ("/health", "/openapi.json", "/docs"):
            assert http.get(path).status_code == 200, path


# -- request heads --------------------------------------------------------------------------
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the HTTP layer only
def test_a_head_not_received_in_time_gets_408_and_is_closed(limited: Platform) -> None:
    with socket.create_connection(("127.0.0.1", port_of(limited))) as sock:
        started = time.monotonic()
        answer = None
        for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000:
            sock.sendall(bytes([byte]))  # one byte each time no answer came in 0.1 s
            if select.select([sock], [], [], 0.1)[0]:
                answer = read_answer(sock, time.monotonic() + 5)
                break
        assert answer is not None, "the server took 1 kB of headers a byte at a time"
        assert time.monotonic() - started < 4
        assert answer.status == 408
        error = answer.error()
        assert error["code"] == "timeout" and "(header_timeout)" in error["message"]
        assert closed(sock, time.monotonic() + 5)
    with socket.create_connection(("127.0.0.1", port_of(limited))) as idle:
        assert closed(idle, time.monotonic() + 5), "a connection sending nothing stays open"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the HTTP layer only
def test_a_body_that_stops_arriving_gets_408_and_is_closed(limited: Platform) -> None:
    keyed = f"x-api-key: {limited.api_key}"
    with socket.create_connection(("127.0.0.1", port_of(limited))) as sock:
        sock.sendall(head("POST", f"{API}/sensors", keyed, "Content-Type: application/json",
                          "Content-Length: 100") + b'{"name": ')
        answer = read_answer(sock, time.monotonic() + 10)
        assert answer.status == 408
        assert "(body_timeout)" in answer.error()["message"]
        assert closed(sock, time.monotonic() + 5)
    with limited.client() as http:
        assert http.get(f"{API}/sensors").json()["items"] == []  # nothing half made
    with socket.create_connection(("127.0.0.1", port_of(limited))) as sock:
        body = b'{"name": "slow-but-steady"}'
        sock.sendall(head("POST", f"{API}/sensors", keyed, "Content-Type: application/json",
                          f"Content-Length: {len(body)}"))
        for start in range(0, len(body) - 4, 4):  # a piece every 0.3 s: slow, never stalled
            sock.sendall(body[start:start + 4])
            answered_early = select.select([sock], [], [], 0.3)[0]
            assert not answered_early, "a body that keeps arriving was cut"
        sock.sendall(body[start + 4:])
        assert read_answer(sock, time.monotonic() + 10).status == 201


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the HTTP layer only
def test_a_websocket_outlives_the_body_and_head_timeouts(limited: Platform) -> None:
    url = limited.url.replace("http://", "ws://") + \
        f"{API}/topics/quiet/consume?api_key={limited.api_key}"
    with connect(url) as ws:
        ws.send(orjson.dumps({"id": 1, "op": "open", "name": "c", "on_no_exists": "create"})
                .decode())
        assert orjson.loads(ws.recv(timeout=10))["ok"] is True
        started = time.monotonic()
        ws.send(orjson.dumps({"id": 2, "op": "fetch", "max_n": 1, "timeout": 3}).decode())
        answer = orjson.loads(ws.recv(timeout=10))  # 3 s idle: past both 1 s timeouts
        assert answer["id"] == 2 and answer["ok"] is True
        assert time.monotonic() - started >= 2.9


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the HTTP layer only
@pytest.mark.parametrize("request_bytes", [
    head("GET", "/health", "X-Big: " + "a" * (100 * KiB)),
    head("GET", "/health?" + "a" * (100 * KiB)),
    head("GET", "/health", *(f"X-Many-{i}: {'b' * 100}" for i in range(1000))),
], ids=["one-header", "query-string", "many-headers"])
def test_an_oversized_head_gets_431(platform: Platform, request_bytes: bytes) -> None:
    answer = exchange(platform, request_bytes)
    assert answer.status == 431
    error = answer.error()
    assert error["code"] == "too_large" and "(max_header_bytes)" in error["message"]


# -- errors of the HTTP layer ---------------------------------------------------------------
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the HTTP layer only
@pytest.mark.parametrize(("request_bytes", "keyed"), [
    (b"GARBAGE\r\n\r\n", False),
    (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", False),
    (head("POST", f"{API}/sensors", "Content-Length: 5", "Content-Length: 6") + b"hello",
     False),
    (head("POST", f"{API}/sensors", "Content-Length: 5", "Transfer-Encoding: chunked")
     + b"hello", False),
    (head("POST", f"{API}/sensors", "Transfer-Encoding: chunked") + b"zz\r\nhello\r\n", True),
], ids=["request-line", "version", "two-lengths", "length-and-chunked", "bad-chunk"])
def test_requests_the_http_layer_refuses_get_json_400(platform: Platform,
                                                       request_bytes: bytes,
                                                       keyed: bool) -> None:
    if keyed:
        first, rest = request_bytes.split(b"\r\n", 1)
        request_bytes = first + f"\r\nx-api-key: {platform.api_key}\r\n".encode() + rest
    answer = exchange(platform, request_bytes)
    assert answer.status == 400
    error = answer.error()
    assert error["code"] == "bad_request" and error["message"].startswith("invalid HTTP")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the HTTP layer only
def test_a_refused_websocket_handshake_gets_json(platform: Platform) -> None:
    answer = exchange(platform, head("GET", f"{API}/topics/t/consume", "Upgrade: websocket",
                                     "Connection: Upgrade", "Sec-WebSocket-Version: 13"))
    assert answer.status == 400
    assert "Sec-WebSocket-Key" in answer.error()["message"]


# -- fetch replies --------------------------------------------------------------------------
def produce(platform: Platform, topic: str, sizes: list[int]) -> list[str]:
    payloads = [chr(ord("a") + i % 26) * size for i, size in enumerate(sizes)]
    with platform.client() as http:
        assert http.put(f"{API}/topics/{topic}").status_code == 201
        for payload in payloads:
            answer = http.post(f"{API}/topics/{topic}/messages", json={"payload": payload})
            assert answer.status_code == 200, answer.text
    return [orjson.dumps(payload).decode() for payload in payloads]


def fetch_all(platform: Platform, topic: str, want: int, **fetch: int) -> list[list[str]]:
    """The replies' data until ``want`` messages came."""
    url = platform.url.replace("http://", "ws://") + f"{API}/topics/{topic}/consume"
    replies: list[list[str]] = []
    with connect(url, additional_headers={"x-api-key": platform.api_key},
                 max_size=None) as ws:
        ws.send(orjson.dumps({"id": 0, "op": "open", "name": "r", "position": "beginning"}))
        assert orjson.loads(ws.recv(timeout=15))["ok"]
        request_id = 0
        while sum(map(len, replies)) < want:
            request_id += 1
            ws.send(orjson.dumps({"id": request_id, "op": "fetch", "max_n": 1000,
                                  "timeout": 5, **fetch}))
            answer = orjson.loads(ws.recv(timeout=15))
            assert answer["id"] == request_id and answer["ok"], answer
            messages = answer["messages"]
            assert messages["seqno"] == list(range(sum(map(len, replies)) + 1,
                                                   sum(map(len, replies)) + 1 +
                                                   len(messages["data"])))
            replies.append(messages["data"])
    return replies


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the HTTP layer only
def test_fetch_replies_are_bounded_in_bytes(small_fetches: Platform) -> None:
    sizes = [100 * KiB] * 12 + [400 * KiB] + [100 * KiB] * 2
    sent = produce(small_fetches, "big", sizes)
    replies = fetch_all(small_fetches, "big", len(sent))
    assert [data for reply in replies for data in reply] == sent
    for reply in replies:
        assert len(reply) == 1 or sum(map(len, reply)) <= 256 * KiB, list(map(len, reply))
    assert [len(d) for r in replies if len(r) == 1 for d in r if len(d) > 256 * KiB] \
        == [400 * KiB + 2]
    assert max(map(len, replies)) >= 2  # the bound is in bytes, not one message a reply

    one_each = fetch_all(small_fetches, "big", len(sent), max_bytes=1)
    assert [len(reply) for reply in one_each] == [1] * len(sent)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the HTTP layer only
def test_the_http_engine_receives_everything_past_the_fetch_limit(small_fetches: Platform
                                                                  ) -> None:
    sent = produce(small_fetches, "big", [200 * KiB] * 9 + [600 * KiB])
    url = f"{small_fetches.url}/?api_key={small_fetches.api_key}"

    async def consume() -> list[str]:
        async with open_engine(url) as engine, \
                engine.consumer("c", "big", position="beginning") as consumer:
            got: list[str] = []
            while len(got) < len(sent):
                batch = await consumer.recv_batch(1000, timeout=15)
                got.extend(m.text() for m in batch)
                await consumer.ack(batch[-1].seqno)
            return got

    assert asyncio.run(consume()) == sent

