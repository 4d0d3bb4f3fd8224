"""The orphan sweep deletes old lake objects no file points at, and nothing else."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from server_fixtures import Platform


def test_old_orphans_go_and_everything_else_stays(platform: Platform) -> None:
    from lakeport.server.files.lake import lake_for, new_key
    from lakeport.server.files.sweep import sweep_orphans
    from lakeport.server.store import Store

    with platform.client() as http:
        assert http.put("/api/v1/files/kept.csv", content=b"a,b\n1,2\n").status_code == 201
    root = Path(platform.settings.lake_url.removeprefix("file://"))
    kept = [p for p in root.rglob("*") if p.is_file()]
    old, young = root / new_key(), root / new_key()
    for path in (old, young):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"cut short")
    day_ago = time.time() - 86_400
    os.utime(old, (day_ago, day_ago))
    for path in kept:  # the referenced object is old too: it must stay
        os.utime(path, (day_ago, day_ago))

    async def sweep() -> int:
        lake = await lake_for(platform.settings.lake_url).open()
        async with Store(platform.settings.store_url) as store:
            return await sweep_orphans(lake, store, older_than=3600)

    assert asyncio.run(sweep()) == 1
    assert not old.exists() and young.exists() and all(p.exists() for p in kept)
    with platform.client() as http:
        assert http.get("/api/v1/files/kept.csv").content == b"a,b\n1,2\n"
