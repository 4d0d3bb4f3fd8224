"""The access matrix of docs/server/access.md for rules and bridges, tried by every kind of
actor (SQLite and PostgreSQL): read shows them and their stats, write starts and stops them,
admin updates and deletes them. A rule or bridge moves data with its owner's rights:
creating one is refused (403 naming the topic) when its owner may not read its source or
produce to its target, and a rule whose owner lost the source fails when it starts."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import Any

import httpx
from test_access_matrix import (
    ACTORS,
    API,
    GRANTED,
    READS,
    USERS,
    Actors,
    Matrix,
    Op,
    actors,
    give_grants,
    listed,
    status,
)

from server_fixtures import Platform
from waiting import wait_until

RULES = f"{API}/rules"
BRIDGES = f"{API}/bridges"
#             owner read write admin revoked stranger operator
WRITES = (200, 403, 200, 200, 404, 404, 200)
UPDATES = (200, 403, 403, 200, 404, 404, 200)
DELETES = (204, 403, 403, 204, 404, 404, 204)
SOURCE, TARGET = "matrix-source", "matrix-target"
numbers = count(1)


def rule_body(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "sql": f'SELECT asset, value FROM "{SOURCE}"',
            "actions": [{"type": "topic", "topic": TARGET}], "start": False, **extra}


def bridge_body(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": "mqtt://127.0.0.1:1883", "subscribe": [f"lp-matrix/{name}/#"],
            "to_topic": TARGET, "qos": 0, "start": False, **extra}


def setup_of(crew: Actors, kind: str) -> Callable[[], str]:
    """A new stopped rule or bridge of alice's, granted to the granted actors."""
    route, body = (RULES, rule_body) if kind == "rule" else (BRIDGES, bridge_body)

    def setup() -> str:
        name = f"{kind}-{next(numbers)}"
        made = crew.owner.post(route, json=body(name))
        assert made.status_code == 201, made.text
        give_grants(crew.owner, kind, name, GRANTED)
        return name

    return setup


def ops(kind: str) -> list[Op]:
    route, body = (RULES, rule_body) if kind == "rule" else (BRIDGES, bridge_body)

    def start(crew: Actors, name: str) -> None:
        assert crew.owner.post(f"{route}/{name}/start").status_code == 200

    rows = [
        Op("list shows it (404: not listed)", READS,
           lambda c: listed(c.http.get(route), "name", c.name)),
        Op("show", READS, lambda c: status(c.http.get(f"{route}/{c.name}"))),
        Op("update", UPDATES, lambda c: status(c.http.put(
            f"{route}/{c.name}", json=body(c.name, start=None))), fresh=True),
        Op("start", WRITES, lambda c: status(c.http.post(f"{route}/{c.name}/start")),
           fresh=True),
        Op("stop", WRITES, lambda c: status(c.http.post(f"{route}/{c.name}/stop")),
           fresh=True, prepare=start),
        Op("delete", DELETES, lambda c: status(c.http.delete(f"{route}/{c.name}")), fresh=True),
    ]
    if kind == "rule":
        rows.insert(2, Op("stats", READS,
                          lambda c: status(c.http.get(f"{route}/{c.name}/stats"))))
    return rows


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def test_rules_and_bridges_matrix(platform: Platform) -> None:
    matrix = Matrix("rules and bridges")
    assert len(ACTORS) == 7
    with actors(platform) as crew:
        for topic in (SOURCE, TARGET):
            assert crew.owner.put(f"{API}/topics/{topic}").status_code == 201
        for kind in ("rule", "bridge"):
            matrix.resource = f"{kind}s"
            matrix.run(crew, setup_of(crew, kind), ops(kind))

        # below read, a rule answers as if it did not exist
        name = setup_of(crew, "rule")()
        sam = crew.http["stranger"]
        hidden = sam.get(f"{RULES}/{name}").json()["error"]["message"]
        unknown = sam.get(f"{RULES}/no-such").json()["error"]["message"]
        matrix.check("show: the message of a hidden and of an unknown rule", "stranger",
                     unknown.replace("no-such", "X"), hidden.replace(name, "X"))
    matrix.verify()


def refusal(answer: httpx.Response, topic: str) -> Any:
    """403 when the answer is a 403 naming ``topic``, else what it was."""
    if answer.status_code == 403 and f"'{topic}'" in answer.json()["error"]["message"]:
        return 403
    return f"{answer.status_code}: {answer.text}"


def test_creating_takes_the_owners_rights_on_the_topics(platform: Platform) -> None:
    matrix = Matrix("rule and bridge topics")
    with actors(platform) as crew:
        alice, rita, sam = crew.owner, crew.http["read"], crew.http["stranger"]
        for topic in (SOURCE, TARGET):
            assert alice.put(f"{API}/topics/{topic}").status_code == 201
        assert sam.put(f"{API}/topics/sams-own").status_code == 201

        for what, http, body, topic in (
                ("rule reading a topic it cannot see", sam,
                 {**rule_body("sam-1"), "actions": [{"type": "topic", "topic": "sams-own"}]},
                 SOURCE),
                ("rule writing a topic it cannot see", sam,
                 {**rule_body("sam-2"), "sql": 'SELECT * FROM "sams-own"'}, TARGET),
                ("rule with a dead-letter topic it cannot see", sam,
                 {**rule_body("sam-3"), "sql": 'SELECT * FROM "sams-own"',
                  "actions": [{"type": "topic", "topic": "sams-own"}],
                  "dead_letter_topic": TARGET}, TARGET),
                ("ingest bridge into a topic it cannot see", sam, bridge_body("sam-4"), TARGET),
                ("egress bridge from a topic it cannot see", sam,
                 {**bridge_body("sam-5"), "to_topic": None, "from_topic": SOURCE,
                  "publish": "out/{asset}"}, SOURCE)):
            route = RULES if "actions" in body else BRIDGES
            matrix.check(what, "stranger", 403, refusal(http.post(route, json=_clean(body)),
                                                        topic))
        assert sam.get(RULES).json()["items"] == []
        assert sam.get(BRIDGES).json()["items"] == []

        # a read grant on the source is enough to read it, not to write the target
        assert alice.put(f"{API}/grants/topic/{SOURCE}",
                         json={"user": USERS["read"], "permission": "read"}).status_code == 201
        matrix.check("rule writing a topic it may only read", "read", 403,
                     refusal(rita.post(RULES, json={
                         **rule_body("rita-1"),
                         "actions": [{"type": "topic", "topic": SOURCE}]}), SOURCE))
        made = rita.post(RULES, json={**rule_body("rita-2"),
                                      "actions": [{"type": "topic", "topic": "rita-new"}]})
        matrix.check("rule into a new topic (created for its owner)", "read", 201,
                     made.status_code)
        matrix.check("the new topic is the rule owner's", "read", 200,
                     rita.get(f"{API}/topics/rita-new").status_code)
        matrix.check("the new topic is not another's", "stranger", 404,
                     sam.get(f"{API}/topics/rita-new").status_code)

        # taking the grant back: the rule fails when it starts, naming the topic
        assert alice.delete(f"{API}/grants/topic/{SOURCE}",
                            params={"user": USERS["read"]}).status_code == 204
        assert rita.post(f"{RULES}/rita-2/start").status_code == 200
        assert wait_until(lambda: rita.get(f"{RULES}/rita-2").json()["state"] == "failed", 15)
        error = rita.get(f"{RULES}/rita-2").json()["error"]
        matrix.check("a started rule whose owner lost its source", "read", True,
                     f"'{SOURCE}'" in error)
        # an update is checked against the owner, whoever updates
        assert rita.put(f"{API}/grants/rule/rita-2", json={
            "user": USERS["admin"], "permission": "admin"}).status_code == 201
        ada = crew.http["admin"]
        matrix.check("admin grantee updates a rule the owner may no longer run", "admin", 403,
                     refusal(ada.put(f"{RULES}/rita-2", json=rule_body("rita-2")), SOURCE))
    matrix.verify()


def test_an_observations_rule_writes_only_sensors_its_owner_may_write(platform: Platform
                                                                       ) -> None:
    with actors(platform) as crew:
        alice, rita = crew.owner, crew.http["read"]
        assert alice.post(f"{API}/sensors", json={"name": "alices-pump"}).status_code == 201
        assert rita.put(f"{API}/topics/rita-raw").status_code == 201
        made = rita.post(RULES, json={
            "name": "rita-obs", "actions": [{"type": "observations"}],
            "sql": "SELECT asset, datastream, value, time FROM \"rita-raw\""})
        assert made.status_code == 201, made.text
        readings = [{"asset": asset, "datastream": "flow", "value": 1.0,
                     "time": "2026-01-15T08:00:00Z"} for asset in ("alices-pump", "ritas-pump")]
        assert rita.post(f"{API}/topics/rita-raw/messages/batch",
                         json={"payloads": readings}).status_code == 200

        def observations(sensor: str) -> list[Any]:
            answer = rita.get(f"{API}/observations", params={"sensor": sensor})
            return answer.json()["items"] if answer.status_code == 200 else []

        assert wait_until(lambda: len(observations("ritas-pump")) == 1, 30)
        assert wait_until(lambda: sum(rita.get(f"{RULES}/rita-obs/stats").json()
                                      ["action_errors"].values()) == 1, 15), \
            rita.get(f"{RULES}/rita-obs/stats").json()
        assert observations("alices-pump") == []
        assert rita.get(f"{API}/sensors/ritas-pump").json()["owner"] == USERS["read"]
