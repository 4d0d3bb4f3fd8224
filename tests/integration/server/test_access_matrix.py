"""The access matrix of docs/server/access.md: every operation on every resource family, tried
by every kind of actor, on a real server (once on SQLite, once on PostgreSQL).

Actors, in the order of every row of expected answers: the resource's owner, users with a
``read``, a ``write`` (``produce`` on topics) and an ``admin`` grant, a user whose grant was
revoked, a stranger, and an operator (a user with the admin role). Expected answers follow the
document: below ``read`` 404, ``read`` but not enough 403, success 200 / 201 / 204. The
observation catalogue is readable by everyone, so nobody gets 404 there.

Each test collects every cell that disagrees and fails once, naming resource, operation,
actor, expected and got for each.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lakeport.streams.remote.wire import BLOCK_CONTENT_TYPE
from lakeport.wire import ERRORS
from server_fixtures import Platform

API = "/api/v1"
ACTORS = ("owner", "read", "write", "admin", "revoked", "stranger", "operator")
USERS = {"owner": "alice", "read": "rita", "write": "walt", "admin": "ada", "revoked": "rex",
         "stranger": "sam", "operator": "ops"}
GRANTED = {"read": "read", "write": "write", "admin": "admin"}
"""The grant each granted actor holds; ``revoked`` held ``admin`` until it was revoked."""
STATUS_OF_CODE = {row.code: row.status for row in ERRORS if row.answers is not None}
CSV = b"a,b\n1,2\n"

Result = int | str
"""A status code, or what went wrong when there is no code to compare (e.g. an empty fetch)."""


# -- actors -----------------------------------------------------------------------------------
def operator_key(platform: Platform, user: str) -> str:
    """A new API key for ``user`` with the operator role."""
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key

    async def make() -> str:
        async with Store(platform.settings.store_url) as store:
            return await create_key(store, user, admin=True)

    return asyncio.run(make())


def revoke(platform: Platform, key: str) -> None:
    from lakeport.server.store import Store
    from lakeport.server.store.users import revoke_key

    async def run() -> None:
        async with Store(platform.settings.store_url) as store:
            await revoke_key(store, key)

    asyncio.run(run())


@dataclass
class Cell:
    """One actor about to try one operation on one resource."""

    actor: str
    user: str
    http: httpx.Client
    key: str
    name: str
    platform: Platform


@dataclass
class Actors:
    platform: Platform
    keys: dict[str, str]
    http: dict[str, httpx.Client]
    stack: ExitStack

    @property
    def owner(self) -> httpx.Client:
        return self.http["owner"]

    def cell(self, actor: str, name: str) -> Cell:
        return Cell(actor, USERS[actor], self.http[actor], self.keys[actor], name, self.platform)

    def client(self, user: str) -> httpx.Client:
        """A client of a user who is none of the actors (bob)."""
        return self.stack.enter_context(self.platform.client(user))


@contextmanager
def actors(platform: Platform) -> Iterator[Actors]:
    keys = {actor: platform.api_key if actor == "owner" else
            operator_key(platform, user) if actor == "operator" else platform.key_for(user)
            for actor, user in USERS.items()}
    platform.key_for("carol")  # the user that actors grant and share onward to
    with ExitStack() as stack:
        http = {actor: stack.enter_context(platform.client(key)) for actor, key in keys.items()}
        yield Actors(platform, keys, http, stack)


# -- the matrix -------------------------------------------------------------------------------
@dataclass
class Op:
    """An operation and the answer each actor (in ACTORS order) should get."""

    name: str
    expect: tuple[Result, ...]
    run: Callable[[Cell], Result]
    fresh: bool = False
    """It changes the resource for whoever comes next: a new resource for every actor."""
    prepare: Callable[[Actors, str], None] | None = None
    """Run as the owner on each new resource before the operation (e.g. a share to undo)."""
    pending: str = ""
    """Why the route may not exist yet: when every actor gets 404 or 405, the row is skipped
    with this reason instead of failing."""


@dataclass
class Matrix:
    resource: str
    failures: list[str] = field(default_factory=list)

    def check(self, op: str, actor: str, expected: Any, got: Any) -> None:
        if got != expected:
            who = f"{actor} ({USERS[actor]})" if actor in USERS else actor
            self.failures.append(f"{self.resource}: {op} as {who}: expected {expected!r}, "
                                 f"got {got!r}")

    def run(self, crew: Actors, setup: Callable[[], str], ops: list[Op]) -> None:
        for op in ops:
            assert len(op.expect) == len(ACTORS), op.name
            name = ""
            results: list[tuple[str, Result, Result]] = []
            for actor, expected in zip(ACTORS, op.expect, strict=True):
                if not name or op.fresh:
                    name = setup()
                    if op.prepare is not None:
                        op.prepare(crew, name)
                results.append((actor, expected, op.run(crew.cell(actor, name))))
            if op.pending and all(got in (404, 405) for _, _, got in results):
                warnings.warn(f"skipped {self.resource}: {op.name} for every actor: {op.pending}"
                              f" (answers {sorted({got for _, _, got in results}, key=str)})",
                              stacklevel=1)
                continue
            for actor, expected, got in results:
                self.check(op.name, actor, expected, got)

    def verify(self) -> None:
        if self.failures:
            pytest.fail(f"{len(self.failures)} cells disagree with docs/server/access.md:\n"
                        + "\n".join(self.failures), pytrace=False)


def status(answer: httpx.Response) -> int:
    return answer.status_code


def listed(answer: httpx.Response, key: str, value: str) -> Result:
    """200 when ``answer`` is a 200 page listing ``value`` under ``key``, 404 when it lists
    other items only (not revealed), else the answer's own status."""
    if answer.status_code != 200:
        return answer.status_code
    return 200 if any(item[key] == value for item in answer.json()["items"]) else 404


def ws_url(platform: Platform, topic: str, key: str | None = None) -> str:
    url = platform.url.replace("http://", "ws://") + f"{API}/topics/{topic}/consume"
    return url if key is None else f"{url}?api_key={key}"


def call(ws: Any, request_id: int, op: str, **fields: Any) -> dict[str, Any]:
    ws.send(orjson.dumps({"id": request_id, "op": op, **fields}).decode())
    while True:
        answer = orjson.loads(ws.recv(timeout=15))
        if answer["id"] == request_id:
            return answer


def failed(answer: dict[str, Any]) -> Result:
    return STATUS_OF_CODE.get(answer["error"]["code"], answer["error"]["code"])


def consume(platform: Platform, key: str, topic: str, name: str = "reader") -> Result:
    """Open a durable consumer ``name`` on ``topic`` and fetch from the beginning: 200 when
    messages arrive, else the status of the error code the socket answered."""
    with connect(ws_url(platform, topic, key)) as ws:
        try:
            opened = call(ws, 0, "open", name=name, position="beginning")
        except ConnectionClosed:
            return "the socket closed without an answer to open"
        if not opened["ok"]:
            return failed(opened)
        fetched = call(ws, 1, "fetch", max_n=10, timeout=5)
        if not fetched["ok"]:
            return failed(fetched)
        call(ws, 2, "close")
    return 200 if fetched["messages"]["seqno"] else "200 but the fetch was empty"


def ws_publish(platform: Platform, key: str, topic: str) -> Result:
    """Publish one message over the publish WebSocket: 200 with its seqno, else the status of
    the error the socket answered (at open, or to the frame)."""
    url = platform.url.replace("http://", "ws://") + f"{API}/topics/{topic}/publish"
    with connect(f"{url}?api_key={key}") as ws:
        try:  # a refusal at open is answered (id 0) and the socket closed
            ws.send(orjson.dumps({"id": 1, "op": "publish", "messages": [{"v": 1}]}).decode())
        except ConnectionClosed:
            pass
        try:
            answer = orjson.loads(ws.recv(timeout=15))
        except ConnectionClosed:
            return "the socket closed without an answer"
    if not answer["ok"]:
        return failed(answer)
    return 200 if len(answer["seqnos"]) == 1 else f"200 with seqnos {answer['seqnos']}"


# -- files ------------------------------------------------------------------------------------
def share(http: httpx.Client, path: str, user: str, permission: str) -> None:
    answer = http.post(f"{API}/shares", json={"path": path, "user": user,
                                              "permission": permission})
    assert answer.status_code == 201, answer.text


def unshare(http: httpx.Client, path: str, user: str) -> int:
    return http.delete(f"{API}/shares", params={"path": path, "user": user}).status_code


def files_setup(crew: Actors) -> Callable[[], str]:
    """``team/`` anew: alice's, with ``team/q1.csv``, shared with the granted actors (and with
    the revoked actor, then unshared)."""
    alice = crew.owner

    def setup() -> str:
        gone = alice.delete(f"{API}/dirs/team", params={"recursive": "true"})
        assert gone.status_code in (204, 404), gone.text
        alice.put(f"{API}/files/team/q1.csv", content=CSV).raise_for_status()
        for actor, permission in GRANTED.items():
            share(alice, "team", USERS[actor], permission)
        share(alice, "team", USERS["revoked"], "admin")
        assert unshare(alice, "team", USERS["revoked"]) == 204
        return "team"

    return setup


def share_with_carol(crew: Actors, tree: str) -> None:
    share(crew.owner, tree, "carol", "read")


#            owner read write admin revoked stranger operator
READS = (200, 200, 200, 200, 404, 404, 200)
FILE_OPS = [
    Op("download team/q1.csv", READS,
       lambda c: status(c.http.get(f"{API}/files/{c.name}/q1.csv"))),
    Op("info of team/q1.csv", READS,
       lambda c: status(c.http.get(f"{API}/info/{c.name}/q1.csv"))),
    Op("list team", READS,
       lambda c: listed(c.http.get(f"{API}/ls/{c.name}"), "path", f"{c.name}/q1.csv")),
    Op("list the root shows team (404: not listed)", READS,
       lambda c: listed(c.http.get(f"{API}/ls"), "path", c.name)),
    Op("search finds team/q1.csv (404: not found)", READS,
       lambda c: listed(c.http.get(f"{API}/search", params={"name": "q1.csv"}), "path",
                        f"{c.name}/q1.csv")),
    Op("read team/q1.csv as a table", READS,
       lambda c: status(c.http.get(f"{API}/table/{c.name}/q1.csv"))),
    Op("list the shares of team", READS,
       lambda c: status(c.http.get(f"{API}/shares", params={"path": c.name}))),
    Op("upload a new file under team", (201, 403, 201, 201, 404, 404, 201),
       lambda c: status(c.http.put(f"{API}/files/{c.name}/new-{c.user}.csv", content=CSV))),
    Op("make a directory under team", (201, 403, 201, 201, 404, 404, 201),
       lambda c: status(c.http.post(f"{API}/dirs/{c.name}/dir-{c.user}"))),
    Op("overwrite team/q1.csv", (200, 403, 200, 200, 404, 404, 200),
       lambda c: status(c.http.put(f"{API}/files/{c.name}/q1.csv", content=CSV,
                                   params={"overwrite": "true"}))),
    Op("append to team/q1.csv", (200, 403, 200, 200, 404, 404, 200),
       lambda c: status(c.http.post(f"{API}/files/{c.name}/q1.csv", content=b"3,4\n",
                                    params={"op": "append"}))),
    Op("patch the tags of team/q1.csv", (200, 403, 200, 200, 404, 404, 200),
       lambda c: status(c.http.patch(f"{API}/info/{c.name}/q1.csv",
                                     json={"add_tags": [c.user]}))),
    Op("delete team/q1.csv", (204, 403, 403, 204, 404, 404, 204),
       lambda c: status(c.http.delete(f"{API}/files/{c.name}/q1.csv")), fresh=True),
    Op("archive team/q1.csv", (200, 403, 403, 200, 404, 404, 200),
       lambda c: status(c.http.post(f"{API}/files/{c.name}/q1.csv", params={"op": "archive"})),
       fresh=True),
    Op("share team onward to carol", (201, 403, 403, 201, 404, 404, 201),
       lambda c: status(c.http.post(f"{API}/shares", json={
           "path": c.name, "user": "carol", "permission": "read"})), fresh=True),
    Op("unshare team from carol", (204, 403, 403, 204, 404, 404, 204),
       lambda c: unshare(c.http, c.name, "carol"), fresh=True, prepare=share_with_carol),
    Op("delete the directory team", (204, 403, 403, 204, 404, 404, 204),
       lambda c: status(c.http.delete(f"{API}/dirs/{c.name}", params={"recursive": "true"})),
       fresh=True),
]


def test_files_matrix(platform: Platform) -> None:
    matrix = Matrix("files")
    with actors(platform) as crew:
        matrix.run(crew, files_setup(crew), FILE_OPS)
        alice, bob, sam = crew.owner, crew.client("bob"), crew.http["stranger"]

        # what a grantee creates in a shared tree stays the tree owner's after the share ends
        files_setup(crew)()
        share(alice, "team", "bob", "write")
        made = bob.put(f"{API}/files/team/sub/x.csv", content=CSV)
        matrix.check("bob (write share) uploads team/sub/x.csv", "bob", 201, made.status_code)
        assert unshare(alice, "team", "bob") == 204
        for what, answer in (
            ("download team/sub/x.csv", bob.get(f"{API}/files/team/sub/x.csv")),
            ("info of team/sub/x.csv", bob.get(f"{API}/info/team/sub/x.csv")),
            ("info of team/sub", bob.get(f"{API}/info/team/sub")),
            ("list team/sub", bob.get(f"{API}/ls/team/sub")),
            ("list team/sub/x.csv", bob.get(f"{API}/ls/team/sub/x.csv")),
            ("read team/sub/x.csv as a table", bob.get(f"{API}/table/team/sub/x.csv")),
            ("overwrite team/sub/x.csv", bob.put(f"{API}/files/team/sub/x.csv", content=CSV,
                                                 params={"overwrite": "true"})),
            ("delete team/sub/x.csv", bob.delete(f"{API}/files/team/sub/x.csv")),
            ("delete the directory team/sub",
             bob.delete(f"{API}/dirs/team/sub", params={"recursive": "true"})),
            ("share team/sub", bob.post(f"{API}/shares", json={
                "path": "team/sub", "user": "carol", "permission": "read"})),
            ("share team/sub/x.csv", bob.post(f"{API}/shares", json={
                "path": "team/sub/x.csv", "user": "carol", "permission": "read"})),
        ):
            matrix.check(f"{what} after the write share ended", "bob", 404, answer.status_code)
        found = listed(bob.get(f"{API}/search", params={"name": "x.csv"}), "path",
                       "team/sub/x.csv")
        matrix.check("search finds team/sub/x.csv after the share ended (404: not found)",
                     "bob", 404, found)
        for path in ("team/sub/x.csv", "team/sub"):
            info = alice.get(f"{API}/info/{path}")
            owner = info.json().get("owner") if info.status_code == 200 else info.status_code
            matrix.check(f"owner in the info of {path} (made by bob)", "owner", "alice", owner)

        # a path under a file nobody shared with you is not revealed: 404, not 409
        alice.put(f"{API}/files/secret.txt", content=b"secret").raise_for_status()
        for who, http, expected in (("stranger", sam, 404), ("read", crew.http["read"], 404),
                                    ("owner", alice, 409), ("operator", crew.http["operator"],
                                                            409)):
            matrix.check("upload secret.txt/below (secret.txt: alice's, unshared)", who,
                         expected, status(http.put(f"{API}/files/secret.txt/below",
                                                   content=b"x")))
            matrix.check("make the directory secret.txt/below", who, expected,
                         status(http.post(f"{API}/dirs/secret.txt/below")))
    matrix.verify()


# -- topics -----------------------------------------------------------------------------------
TOPIC = "plant.temps"


def topics_setup(crew: Actors) -> Callable[[], str]:
    """``plant.temps`` anew: alice's, one message, granted to the granted actors (and to the
    revoked actor, then revoked)."""
    alice = crew.owner

    def setup() -> str:
        gone = alice.delete(f"{API}/topics/{TOPIC}")
        assert gone.status_code in (204, 404), gone.text
        assert alice.put(f"{API}/topics/{TOPIC}").status_code == 201
        alice.post(f"{API}/topics/{TOPIC}/messages",
                   json={"payload": {"temp": 20.5}}).raise_for_status()
        give_grants(alice, "topic", TOPIC, {"read": "read", "write": "produce",
                                            "admin": "admin"})
        return TOPIC

    return setup


def give_grants(owner: httpx.Client, kind: str, name: str, granted: dict[str, str]) -> None:
    """Grant each actor of ``granted`` its permission, and the revoked actor admin, taken
    back at once."""
    for actor, permission in (*granted.items(), ("revoked", "admin")):
        answer = owner.put(f"{API}/grants/{kind}/{name}",
                           json={"user": USERS[actor], "permission": permission})
        assert answer.status_code == 201, answer.text
    assert owner.delete(f"{API}/grants/{kind}/{name}",
                        params={"user": USERS["revoked"]}).status_code == 204


def grant_carol(http: httpx.Client, kind: str, name: str) -> None:
    answer = http.put(f"{API}/grants/{kind}/{name}", json={"user": "carol", "permission": "read"})
    assert answer.status_code == 201, answer.text


def forwarded_block() -> bytes:
    """A zstd-compressed block of one message, as ``lakeport forward`` sends it."""
    from lakeport.streams import Format, Message
    from lakeport.streams.block import MessageBlock
    from lakeport.streams.remote.wire import block_body

    return block_body(MessageBlock.from_messages([Message(1, 1, "p", b"1")], Format.JSON),
                      ["site:raw:1"])


#             owner read write admin revoked stranger operator
PRODUCES = (200, 403, 200, 200, 404, 404, 200)
ADMINS = (204, 403, 403, 204, 404, 404, 204)
TOPIC_OPS = [
    Op("list topics shows it (404: not listed)", READS,
       lambda c: listed(c.http.get(f"{API}/topics"), "name", c.name)),
    Op("show", READS, lambda c: status(c.http.get(f"{API}/topics/{c.name}"))),
    Op("create it again (a taken name stays taken)", (200, 200, 200, 200, 409, 409, 200),
       lambda c: status(c.http.put(f"{API}/topics/{c.name}"))),
    Op("produce one", PRODUCES,
       lambda c: status(c.http.post(f"{API}/topics/{c.name}/messages",
                                    json={"payload": {"by": c.user}}))),
    Op("produce a batch", PRODUCES,
       lambda c: status(c.http.post(f"{API}/topics/{c.name}/messages/batch",
                                    json={"payloads": [1, 2]}))),
    Op("produce a block (lakeport forward)", PRODUCES,
       lambda c: status(c.http.post(f"{API}/topics/{c.name}/messages/block",
                                    content=forwarded_block(),
                                    headers={"content-type": BLOCK_CONTENT_TYPE,
                                             "content-encoding": "zstd"}))),
    Op("find its last msg_id (lakeport forward)", PRODUCES,
       lambda c: status(c.http.get(f"{API}/topics/{c.name}/msg-ids/last",
                                   params={"prefix": "site:"}))),
    Op("consume over the WebSocket", READS, lambda c: consume(c.platform, c.key, c.name)),
    Op("publish over the WebSocket", PRODUCES, lambda c: ws_publish(c.platform, c.key, c.name)),
    Op("list its grants", READS,
       lambda c: status(c.http.get(f"{API}/grants/topic/{c.name}"))),
    Op("grant carol read", (201, 403, 403, 201, 404, 404, 201),
       lambda c: status(c.http.put(f"{API}/grants/topic/{c.name}",
                                   json={"user": "carol", "permission": "read"})), fresh=True),
    Op("revoke carol's grant", ADMINS,
       lambda c: status(c.http.delete(f"{API}/grants/topic/{c.name}",
                                      params={"user": "carol"})),
       fresh=True, prepare=lambda crew, name: grant_carol(crew.owner, "topic", name)),
    Op("delete", ADMINS, lambda c: status(c.http.delete(f"{API}/topics/{c.name}")),
       fresh=True),
]

#              owner read write admin revoked stranger operator
OPERATOR_ONLY = (404, 404, 404, 404, 404, 404, 200)
UNOWNED_OPS = [
    Op("list topics shows it (404: not listed)", OPERATOR_ONLY,
       lambda c: listed(c.http.get(f"{API}/topics"), "name", c.name)),
    Op("show", OPERATOR_ONLY, lambda c: status(c.http.get(f"{API}/topics/{c.name}"))),
    Op("create it again (a taken name stays taken)", (409, 409, 409, 409, 409, 409, 200),
       lambda c: status(c.http.put(f"{API}/topics/{c.name}"))),
    Op("produce one", OPERATOR_ONLY,
       lambda c: status(c.http.post(f"{API}/topics/{c.name}/messages", json={"payload": 1}))),
    Op("consume over the WebSocket", OPERATOR_ONLY,
       lambda c: consume(c.platform, c.key, c.name)),
    Op("grant carol read", (404, 404, 404, 404, 404, 404, 201),
       lambda c: status(c.http.put(f"{API}/grants/topic/{c.name}",
                                   json={"user": "carol", "permission": "read"}))),
    Op("delete", (404, 404, 404, 404, 404, 404, 204),
       lambda c: status(c.http.delete(f"{API}/topics/{c.name}"))),
]


def made_on_the_engine(platform: Platform, topic: str) -> None:
    """``topic`` with one message, made by a pipeline on the server's engine, not through the
    server: it has no owner."""
    from lakeport.streams import open_engine

    async def make() -> None:
        async with open_engine(platform.settings.streams_url) as engine, \
                engine.producer("pipeline", topic) as producer:
            await producer.produce({"raw": 1})

    asyncio.run(make())


def test_topics_matrix(platform: Platform) -> None:
    matrix = Matrix("topics")
    with actors(platform) as crew:
        matrix.run(crew, topics_setup(crew), TOPIC_OPS)

        unowned = Matrix("topic made on the engine")
        made_on_the_engine(platform, "legacy.raw")
        unowned.run(crew, lambda: "legacy.raw", UNOWNED_OPS)

        # an operator grants access to a topic nobody owns
        made_on_the_engine(platform, "legacy.more")
        ops = crew.http["operator"]
        granted = ops.put(f"{API}/grants/topic/legacy.more",
                          json={"user": USERS["read"], "permission": "read"})
        unowned.check("operator grants rita read", "operator", 201, granted.status_code)
        for actor, expected in (("read", 200), ("owner", 404), ("stranger", 404)):
            http = crew.http[actor]
            unowned.check("show after the operator's grant to rita", actor, expected,
                          status(http.get(f"{API}/topics/legacy.more")))
            unowned.check("consume after the operator's grant to rita", actor, expected,
                          consume(platform, crew.keys[actor], "legacy.more"))
            unowned.check("produce after the operator's grant to rita", actor,
                          403 if expected == 200 else 404,
                          status(http.post(f"{API}/topics/legacy.more/messages",
                                           json={"payload": 1})))
        matrix.failures += unowned.failures

        # the topic the observation service publishes a sensor's observations to is the
        # sensor owner's
        alice = crew.owner
        alice.post(f"{API}/sensors", json={"name": "line-1"}).raise_for_status()
        alice.post(f"{API}/properties", json={"name": "temp", "data_type": "number"}
                   ).raise_for_status()
        published = alice.post(f"{API}/observations", params={"routing": "stream"},
                               json={"sensor": "line-1", "property": "temp", "value": 1.5})
        assert published.status_code == 201, published.text
        for actor, expected in (("owner", 200), ("stranger", 404), ("operator", 200)):
            matrix.check("show observations.line-1 (published for alice's sensor line-1)",
                         actor, expected,
                         status(crew.http[actor].get(f"{API}/topics/observations.line-1")))
            matrix.check("consume observations.line-1", actor, expected,
                         consume(platform, crew.keys[actor], "observations.line-1"))
    matrix.verify()


def test_durable_consumers_belong_to_their_user(platform: Platform) -> None:
    topic = "shared.feed"
    matrix = Matrix("consumers")
    with platform.client() as alice, platform.client("bob") as bob, \
            platform.client("carol") as carol:
        bob_key, carol_key = bob.headers["x-api-key"], carol.headers["x-api-key"]
        assert alice.put(f"{API}/topics/{topic}").status_code == 201
        alice.post(f"{API}/topics/{topic}/messages/batch",
                   json={"payloads": [1, 2, 3]}).raise_for_status()
        alice.put(f"{API}/grants/topic/{topic}",
                  json={"user": "bob", "permission": "read"}).raise_for_status()

        with connect(ws_url(platform, topic, platform.api_key)) as mine, \
                connect(ws_url(platform, topic, bob_key)) as his:
            opened = call(mine, 0, "open", name="exporter", position="beginning")
            assert opened["ok"], opened
            fetched = call(mine, 1, "fetch", max_n=10, timeout=5)
            matrix.check("fetch all from her exporter", "owner", [1, 2, 3],
                         fetched["messages"]["seqno"] if fetched["ok"] else failed(fetched))
            matrix.check("ack 3", "owner", 3, call(mine, 2, "ack", seqno=3).get("acked"))

            opened = call(his, 0, "open", name="exporter", position="beginning")
            matrix.check("open exporter (read grant; alice has one of that name)", "bob",
                         200, 200 if opened["ok"] else failed(opened))
            matrix.check("acked of his exporter after alice acked 3 on hers", "bob", 0,
                         opened.get("acked"))
            fetched = call(his, 1, "fetch", max_n=10, timeout=5)
            matrix.check("fetch all from his exporter", "bob", [1, 2, 3],
                         fetched["messages"]["seqno"] if fetched["ok"] else failed(fetched))
            refused = call(his, 2, "ack", seqno=1000)
            matrix.check("ack 1000 on a topic of 3 messages (error code)", "bob", "invalid",
                         "accepted" if refused["ok"] else refused["error"]["code"])
            alice.post(f"{API}/topics/{topic}/messages", json={"payload": 4}).raise_for_status()
            fetched = call(his, 3, "fetch", max_n=10, timeout=5)
            matrix.check("fetch after the refused ack delivers the new message", "bob", [4],
                         fetched["messages"]["seqno"] if fetched["ok"] else failed(fetched))
            matrix.check("acked after the refused ack", "bob", 0, fetched.get("acked"))
            matrix.check("acked of her exporter after bob's ack", "owner", 3,
                         call(mine, 3, "info")["info"]["acked"])

            shown = alice.get(f"{API}/topics/{topic}").json()["consumers"]
            matrix.check("consumers shown to the topic's owner", "owner",
                         [("bob/exporter", 0), ("exporter", 3)],
                         sorted((c["name"], c["acked"]) for c in shown))
            shown = bob.get(f"{API}/topics/{topic}").json()["consumers"]
            matrix.check("consumers shown to a reader", "bob", ["exporter"],
                         sorted(c["name"] for c in shown))
            call(mine, 9, "close")
            call(his, 9, "close")

        with connect(ws_url(platform, topic, carol_key)) as ws:
            opened = call(ws, 0, "open", name="exporter", position="beginning")
            matrix.check("open exporter without a grant (error code)", "carol", "not_found",
                         "opened" if opened["ok"] else opened["error"]["code"])
        with connect(ws_url(platform, topic, platform.api_key)) as ws:
            opened = call(ws, 0, "open", name="exporter")
            matrix.check("reopen her exporter: the acks are hers only", "owner", 3,
                         opened.get("acked"))
    matrix.verify()


# -- sensors, features, observed properties ---------------------------------------------------
ROUTE = {"sensor": "sensors", "feature": "features", "property": "properties"}
PROPERTY = "temp"
"""alice's observed property (a number) that observations use."""


def own_sensor(user: str) -> str:
    return f"own-{user}"


def catalogue_setup(crew: Actors, kind: str) -> Callable[[], str]:
    """A new resource of ``kind``: alice's, granted to the granted actors (and to the revoked
    actor, then revoked)."""
    numbers = count(1)
    alice = crew.owner

    def setup() -> str:
        name = f"{kind}-{next(numbers)}"
        body: dict[str, Any] = {"name": name}
        if kind == "property":
            body.update(data_type="number", unit="degC")
        made = alice.post(f"{API}/{ROUTE[kind]}", json=body)
        assert made.status_code == 201, made.text
        give_grants(alice, kind, name, GRANTED)
        return name

    return setup


def observe(http: httpx.Client, sensor: str, prop: str = PROPERTY, feature: str | None = None
            ) -> int:
    body: dict[str, Any] = {"sensor": sensor, "property": prop, "value": 21.5}
    if feature is not None:
        body["feature"] = feature
    return http.post(f"{API}/observations", json=body).status_code


def observed_by_alice(crew: Actors, sensor: str) -> None:
    assert observe(crew.owner, sensor) == 201, f"alice cannot observe with her sensor {sensor}"


def in_catalogue(http: httpx.Client, kind: str, name: str) -> Result:
    return listed(http.get(f"{API}/{ROUTE[kind]}", params={"limit": 10_000}), "name", name)


#             owner read write admin revoked stranger operator
EVERYONE = (200, 200, 200, 200, 200, 200, 200)
CHANGES = (200, 403, 200, 200, 403, 403, 200)
GRANTS = (201, 403, 403, 201, 403, 403, 201)
DELETES = (204, 403, 403, 204, 403, 403, 204)
PATCH = {"sensor": {"description": "changed"}, "feature": {"description": "changed"},
         "property": {"unit": "K"}}


def catalogue_ops(kind: str) -> list[Op]:
    path = ROUTE[kind]
    ops = [
        Op("get", EVERYONE, lambda c: status(c.http.get(f"{API}/{path}/{c.name}"))),
        Op("list shows it (404: not listed)", EVERYONE,
           lambda c: in_catalogue(c.http, kind, c.name)),
        Op("patch", CHANGES,
           lambda c: status(c.http.patch(f"{API}/{path}/{c.name}", json=PATCH[kind]))),
        Op("list its grants", EVERYONE,
           lambda c: status(c.http.get(f"{API}/grants/{kind}/{c.name}"))),
    ]
    if kind == "sensor":
        ops += [
            Op("insert an observation of it", (201, 403, 201, 201, 403, 403, 201),
               lambda c: observe(c.http, c.name)),
            Op("insert a batch of observations of it", (201, 403, 201, 201, 403, 403, 201),
               lambda c: status(c.http.post(f"{API}/observations/batch", json={
                   "sensor": c.name, "components": ["time", PROPERTY],
                   "dataArray": [[0, 1.5], [1000, 2.5]]}))),
            Op("insert a CSV of observations of it", (201, 403, 201, 201, 403, 403, 201),
               lambda c: status(c.http.post(f"{API}/observations/csv",
                                            params={"sensor": c.name},
                                            content=f"time,{PROPERTY}\n0,1.5\n".encode()))),
            Op("query its observations", EVERYONE,
               lambda c: status(c.http.get(f"{API}/observations", params={"sensor": c.name}))),
            Op("delete its observations", (200, 403, 403, 200, 403, 403, 200),
               lambda c: status(c.http.delete(f"{API}/observations",
                                              params={"sensor": c.name})),
               fresh=True, prepare=observed_by_alice,
               pending="DELETE /api/v1/observations is not served yet"),
        ]
    else:
        field_name = "feature" if kind == "feature" else "prop"
        ops.append(Op("use it in an observation of one's own sensor", (201,) * 7,
                      lambda c: observe(c.http, own_sensor(c.user),
                                        **{field_name: c.name})))
    return [*ops,
            Op("grant carol read", GRANTS,
               lambda c: status(c.http.put(f"{API}/grants/{kind}/{c.name}",
                                           json={"user": "carol", "permission": "read"})),
               fresh=True),
            Op("delete", DELETES, lambda c: status(c.http.delete(f"{API}/{path}/{c.name}")),
               fresh=True)]


def test_catalogue_matrix(platform: Platform) -> None:
    failures: list[str] = []
    with actors(platform) as crew:
        alice = crew.owner
        made = alice.post(f"{API}/properties", json={"name": PROPERTY, "data_type": "number"})
        assert made.status_code == 201, made.text
        for actor in ACTORS:
            answer = crew.http[actor].post(f"{API}/sensors",
                                           json={"name": own_sensor(USERS[actor])})
            assert answer.status_code == 201, answer.text
        for kind in ROUTE:
            matrix = Matrix(kind)
            matrix.run(crew, catalogue_setup(crew, kind), catalogue_ops(kind))
            failures += matrix.failures

        # another user's resource that refers to yours keeps yours from being deleted
        refs = Matrix("references")
        bob = crew.client("bob")
        alice.post(f"{API}/sensors", json={"name": "base"}).raise_for_status()
        composite = bob.post(f"{API}/sensors", json={"name": "bob-rig", "kind": "composite",
                                                     "components": ["base"]})
        refs.check("bob makes a composite sensor of alice's sensor", "bob", 201,
                   composite.status_code)
        alice.post(f"{API}/features", json={"name": "site"}).raise_for_status()
        child = bob.post(f"{API}/features", json={"name": "bob-line", "parent": "site"})
        refs.check("bob makes a child feature of alice's feature", "bob", 201,
                   child.status_code)
        alice.post(f"{API}/features", json={"name": "yard"}).raise_for_status()
        alice.post(f"{API}/properties", json={"name": "level", "data_type": "number"}
                   ).raise_for_status()
        bob.post(f"{API}/sensors", json={"name": "bob-meter"}).raise_for_status()
        refs.check("bob observes alice's feature and property with his sensor", "bob", 201,
                   observe(bob, "bob-meter", prop="level", feature="yard"))
        for what, path in (("delete her sensor, a component of bob's", "sensors/base"),
                           ("delete her feature, the parent of bob's", "features/site"),
                           ("delete her feature, observed by bob", "features/yard"),
                           ("delete her property, observed by bob", "properties/level")):
            answer = alice.delete(f"{API}/{path}")
            got: Result = answer.status_code
            if got == 409 and "'bob'" not in answer.json()["error"]["message"]:
                got = f"409 not naming bob: {answer.json()['error']['message']!r}"
            refs.check(what, "owner", 409, got)
        failures += refs.failures
    summary = Matrix("observation catalogue", failures)
    summary.verify()


# -- API keys ---------------------------------------------------------------------------------
def every_route_family(http: httpx.Client) -> list[tuple[str, httpx.Response]]:
    """One request to each family of routes."""
    return [(f"{r.request.method} {r.request.url.path}", r) for r in (
        http.get(f"{API}/me"),
        http.get(f"{API}/ls"), http.get(f"{API}/ls/team"), http.get(f"{API}/files/team/q1.csv"),
        http.put(f"{API}/files/keys/k.txt", content=b"x"), http.get(f"{API}/info/team/q1.csv"),
        http.patch(f"{API}/info/team/q1.csv", json={"tags": ["k"]}),
        http.get(f"{API}/table/team/q1.csv"), http.get(f"{API}/search"),
        http.post(f"{API}/dirs/keys"), http.delete(f"{API}/dirs/team"),
        http.get(f"{API}/shares"),
        http.post(f"{API}/shares", json={"path": "team", "user": "carol",
                                         "permission": "read"}),
        http.get(f"{API}/relations", params={"path": "team/q1.csv"}),
        http.get(f"{API}/lineage/team/q1.csv"),
        http.get(f"{API}/topics"), http.put(f"{API}/topics/{TOPIC}"),
        http.get(f"{API}/topics/{TOPIC}"), http.delete(f"{API}/topics/{TOPIC}"),
        http.post(f"{API}/topics/{TOPIC}/messages", json={"payload": 1}),
        http.post(f"{API}/topics/{TOPIC}/messages/batch", json={"payloads": [1]}),
        http.post(f"{API}/topics/{TOPIC}/messages/block", content=forwarded_block(),
                  headers={"content-type": BLOCK_CONTENT_TYPE}),
        http.get(f"{API}/topics/{TOPIC}/msg-ids/last", params={"prefix": "a"}),
        http.get(f"{API}/grants/topic/{TOPIC}"),
        http.put(f"{API}/grants/topic/{TOPIC}", json={"user": "carol", "permission": "read"}),
        http.get(f"{API}/sensors"), http.post(f"{API}/sensors", json={"name": "k"}),
        http.get(f"{API}/sensors/base"), http.get(f"{API}/features"),
        http.get(f"{API}/properties"),
        http.post(f"{API}/observations",
                  json={"sensor": "base", "property": PROPERTY, "value": 1}),
        http.get(f"{API}/observations"), http.get(f"{API}/observations/latest"),
        http.delete(f"{API}/observations", params={"sensor": "base"}),
        http.get(f"{API}/datastreams"), http.get(f"{API}/counts"),
    )]


def test_keys(platform: Platform) -> None:
    matrix = Matrix("API keys")
    with platform.client() as alice, platform.client("bob") as bob, \
            platform.client("bob") as bob_again:
        alice.put(f"{API}/files/team/q1.csv", content=CSV).raise_for_status()
        alice.put(f"{API}/topics/{TOPIC}").raise_for_status()
        alice.post(f"{API}/sensors", json={"name": "base"}).raise_for_status()
        alice.post(f"{API}/properties", json={"name": PROPERTY}).raise_for_status()
        for http in (bob, bob_again):
            matrix.check("GET /api/v1/me", "bob", {"user": "bob"}, http.get(f"{API}/me").json())
        made = bob.post(f"{API}/sensors", json={"name": "bobs"})
        matrix.check("owner of a sensor made with bob's key", "bob", "bob",
                     made.json().get("owner", made.status_code))
        matrix.check("show alice's topic with bob's key", "bob", 404,
                     status(bob.get(f"{API}/topics/{TOPIC}")))

        used = platform.key_for("kim")
        unused = platform.key_for("kim")
        with platform.client(used) as kim:
            matrix.check("GET /api/v1/me before the revocation", "kim", 200,
                         status(kim.get(f"{API}/me")))
        revoke(platform, used)
        revoke(platform, unused)
        platform.app.state.key_cache.forget()  # the server caches lookups a while
        for which, key in (("revoked key (used before)", used), ("revoked key (never used)",
                                                                unused)):
            with platform.client(key) as revoked:
                for route, answer in every_route_family(revoked):
                    matrix.check(route, which, 401, answer.status_code)
            with connect(ws_url(platform, TOPIC, key)) as ws:
                answer = orjson.loads(ws.recv(timeout=15))
            matrix.check("WebSocket consume", which, "unauthorized",
                         "accepted" if answer.get("ok") else answer["error"]["code"])
        with platform.client("kim") as kim:  # a new key of kim's
            matrix.check("GET /api/v1/me with a new key after two were revoked", "kim",
                         {"user": "kim"}, kim.get(f"{API}/me").json())
    matrix.verify()
