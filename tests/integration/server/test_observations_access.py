"""Observations under the access model: writes need write access to the sensor, the sensor's
observations topic belongs to its owner, and an emptied sensor can be deleted."""

from __future__ import annotations

from test_observations import API, error, setup_station

from server_fixtures import Platform


def test_inserting_needs_write_access_to_the_sensor(platform: Platform) -> None:
    with platform.client() as alice, platform.client("bob") as bob:
        setup_station(alice)
        reading = {"sensor": "st-1", "property": "temp", "value": 20.5}
        refused = error(bob.post(f"{API}/observations", json=reading), 403)
        assert "st-1" in refused["message"] and "alice" in refused["message"]
        batch = {"sensor": "st-1", "components": ["time", "temp"],
                 "dataArray": [["2026-01-01T00:00:00Z", 1.0]]}
        error(bob.post(f"{API}/observations/batch", json=batch), 403)
        csv = b"time,temp\n2026-01-01T00:00:00Z,1.5\n"
        error(bob.post(f"{API}/observations/csv", params={"sensor": "st-1"}, content=csv), 403)
        assert alice.get(f"{API}/observations/count", params={"sensor": "st-1"}).json() \
            == {"count": 0}

        alice.put(f"{API}/grants/sensor/st-1",
                  json={"user": "bob", "permission": "write"}).raise_for_status()
        assert bob.post(f"{API}/observations", json=reading).status_code == 201
        error(bob.delete(f"{API}/observations", params={"sensor": "st-1"}), 403)  # admin only
        assert alice.delete(f"{API}/grants/sensor/st-1", params={"user": "bob"}) \
            .status_code == 204
        error(bob.post(f"{API}/observations", json=reading), 403)
        assert alice.get(f"{API}/observations/count", params={"sensor": "st-1"}).json() \
            == {"count": 1}


def test_observation_topics_belong_to_the_sensor_owner(platform: Platform) -> None:
    with platform.client() as alice, platform.client("bob") as bob:
        setup_station(alice)
        reading = {"sensor": "st-1", "property": "temp", "value": 20.5}
        answer = alice.post(f"{API}/observations", params={"routing": "both"}, json=reading)
        assert answer.status_code == 201 and answer.json()["published"] == 1
        assert alice.get(f"{API}/topics/observations.st-1").json()["last_seqno"] == 1
        error(bob.get(f"{API}/topics/observations.st-1"), 404)
        names = [t["name"] for t in bob.get(f"{API}/topics").json()["items"]]
        assert "observations.st-1" not in names
        alice.put(f"{API}/grants/topic/observations.st-1",
                  json={"user": "bob", "permission": "read"}).raise_for_status()
        assert bob.get(f"{API}/topics/observations.st-1").status_code == 200
        error(bob.post(f"{API}/topics/observations.st-1/messages", json={"payload": 1}), 403)


def test_an_emptied_sensor_can_be_deleted_and_made_again(platform: Platform) -> None:
    with platform.client() as alice:
        setup_station(alice)
        reading = {"sensor": "st-1", "property": "temp", "feature": "plant", "value": 1.0,
                   "time": "2026-01-01T00:00:00Z"}
        assert alice.post(f"{API}/observations", json=reading).status_code == 201
        assert "observations" in error(alice.delete(f"{API}/sensors/st-1"), 409)["message"]
        assert alice.delete(f"{API}/observations", params={"sensor": "st-1"}).json() \
            == {"deleted": 1}
        assert alice.delete(f"{API}/sensors/st-1").status_code == 204
        assert alice.delete(f"{API}/features/plant").status_code == 204
        assert alice.post(f"{API}/sensors", json={"name": "st-1"}).status_code == 201
        assert alice.post(f"{API}/observations",
                          json={**reading, "feature": None, "value": 2.0}).status_code == 201
        latest = alice.get(f"{API}/observations/latest", params={"sensor": "st-1"}).json()
        assert [item["value"] for item in latest["items"]] == [2.0]


def test_references_of_other_users_name_them(platform: Platform) -> None:
    with platform.client() as alice, platform.client("bob") as bob:
        setup_station(alice)
        bob.post(f"{API}/sensors", json={"name": "rig", "kind": "composite",
                                         "components": ["st-1"]}).raise_for_status()
        bob.post(f"{API}/features", json={"name": "bay", "parent": "plant"}).raise_for_status()
        assert "bob" in error(alice.delete(f"{API}/sensors/st-1"), 409)["message"]
        assert "bob" in error(alice.delete(f"{API}/features/plant"), 409)["message"]
