"""The server's core: health, API keys, the JSON error body, the OpenAPI document."""

from __future__ import annotations

from server_fixtures import Platform


def test_health_needs_no_key_and_names_the_store(platform: Platform) -> None:
    with platform.client(key=None) as http:
        answer = http.get("/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert answer.json()["store"] in ("sqlite", "postgresql")


def test_a_key_identifies_its_user(platform: Platform) -> None:
    with platform.client() as http:
        assert http.get("/api/v1/me").json() == {"user": "alice"}
    with platform.client("bob") as http:
        assert http.get("/api/v1/me").json() == {"user": "bob"}


def test_missing_and_wrong_keys_get_401_with_an_error_body(platform: Platform) -> None:
    with platform.client(key=None) as http:
        missing = http.get("/api/v1/me")
    with platform.client(key="lpk_00000000_not-a-key") as http:
        wrong = http.get("/api/v1/me")
    for answer in (missing, wrong):
        assert answer.status_code == 401
        error = answer.json()["error"]
        assert error["code"] == "unauthorized" and error["message"]
        assert set(error) == {"code", "message", "details"}
    assert "x-api-key" in missing.json()["error"]["message"]


def test_a_revoked_key_stops_working(platform: Platform) -> None:
    import asyncio

    from lakeport.server.store import Store
    from lakeport.server.store.users import revoke_key

    key = platform.key_for("carol")
    with platform.client(key) as http:
        assert http.get("/api/v1/me").status_code == 200

    async def revoke() -> None:
        async with Store(platform.settings.store_url) as store:
            await revoke_key(store, key)

    asyncio.run(revoke())
    platform.app.state.key_cache.forget(key)
    with platform.client(key) as http:
        assert http.get("/api/v1/me").status_code == 401


def test_unknown_route_is_404_json(platform: Platform) -> None:
    with platform.client() as http:
        answer = http.get("/api/v1/no-such-thing")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_openapi_document_declares_the_api_key(platform: Platform) -> None:
    with platform.client(key=None) as http:
        document = http.get("/openapi.json").json()
    assert document["info"]["title"] == "lakeport"
    schemes = document["components"]["securitySchemes"]
    assert any(s.get("name") == "x-api-key" and s.get("in") == "header"
               for s in schemes.values())
