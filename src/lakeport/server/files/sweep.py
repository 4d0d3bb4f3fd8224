"""Orphan sweep: objects in the lake that no file points at (an upload cut by a crash, a
replaced object whose deletion did not happen) are deleted once they are old enough that no
upload can still be writing them."""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa

from lakeport.server.files.lake import Lake
from lakeport.server.files.tables import entries
from lakeport.server.store import Store

log = logging.getLogger("lakeport.server.files")
ORPHAN_AGE = 6 * 3600.0
"""Seconds an unreferenced object is left alone (an upload in progress elsewhere)."""


async def sweep_orphans(lake: Lake, store: Store, older_than: float = ORPHAN_AGE) -> int:
    """Delete unreferenced objects older than ``older_than`` seconds; how many went."""
    ages = await asyncio.to_thread(lake.object_ages)
    old = {key for key, age in ages.items() if age >= older_than}
    if not old:
        return 0
    async with store.connect() as conn:
        used = set((await conn.execute(
            sa.select(entries.c.object_key).where(entries.c.object_key.is_not(None)))).scalars())
    orphans = sorted(old - used)
    await lake.delete(*orphans)
    if orphans:
        log.warning("deleted %d orphaned lake objects (uploads cut short, replaced files)",
                    len(orphans))
    return len(orphans)


__all__ = ["ORPHAN_AGE", "sweep_orphans"]
