"""Each server app caches its own API-key lookups: two apps in one process on one store do not
share what they cached, a lookup one app forgets is refused there at once, and a key revoked
elsewhere is refused once the cache's time is up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lakeport.server.auth import KeyCache
from lakeport.server.store.users import User
from server_fixtures import Platform, platform_settings, running_platform


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def revoke(platform: Platform, key: str) -> None:
    from lakeport.server.store import Store
    from lakeport.server.store.users import revoke_key

    async def run() -> None:
        async with Store(platform.settings.store_url) as store:
            await revoke_key(store, key)

    asyncio.run(run())


def me(platform: Platform, key: str) -> int:
    with platform.client(key) as http:
        return http.get("/api/v1/me").status_code


def test_two_apps_keep_their_own_key_cache(store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    with running_platform(platform_settings(store_url, tmp_path / "a")) as a, \
            running_platform(platform_settings(store_url, tmp_path / "b")) as b:
        assert a.app is not b.app
        assert a.app.state.key_cache is not b.app.state.key_cache
        b.app.state.key_cache = KeyCache(seconds=5.0, clock=clock)
        key = a.key_for("carol")
        assert (me(a, key), me(b, key)) == (200, 200)  # both cached carol's key

        revoke(a, key)
        a.app.state.key_cache.forget(key)
        assert me(a, key) == 401  # forgotten here: refused at once
        assert me(b, key) == 200  # the other app's cache is its own, still within its time
        clock.now += 5.0
        assert me(b, key) == 401  # its time is up: looked up again, revoked
        assert me(a, a.api_key) == me(b, b.api_key) == 200


def test_a_lookup_is_trusted_for_its_time_only() -> None:
    clock = Clock()
    cache = KeyCache(seconds=5.0, clock=clock)
    carol, dave = User(1, "carol"), User(2, "dave")
    cache.put("lpk_carol", carol)
    cache.put("lpk_dave", dave)
    clock.now += 4.9
    assert (cache.get("lpk_carol"), cache.get("lpk_dave")) == (carol, dave)
    cache.forget("lpk_carol")
    assert (cache.get("lpk_carol"), cache.get("lpk_dave")) == (None, dave)
    clock.now += 0.1
    assert cache.get("lpk_dave") is None
    assert cache.get("lpk_unknown") is None


def test_the_cache_stays_bounded_and_keeps_no_keys() -> None:
    cache = KeyCache(max_keys=3)
    for i in range(10):
        cache.put(f"lpk_{i}", User(i, f"u{i}"))
    assert len(cache) <= 3
    assert cache.get("lpk_9") == User(9, "u9")
    assert not any(key.startswith("lpk_") for key in cache._users)
    cache.forget()
    assert cache.get("lpk_9") is None
