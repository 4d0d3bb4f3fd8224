"""Migrating a store made before the access model, with users and files in it: entries another
user created inside a shared directory pass to the owner of the tree, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from lakeport.server.store import MIGRATIONS, Store


def _upgrade_to(connection: Any, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def test_entries_made_in_a_shared_directory_pass_to_the_tree_owner(empty_store_url: str) -> None:
    async def scenario() -> dict[str, str]:
        old = Store(empty_store_url)
        async with old.engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0003")
            for user_id, name in ((1, "alice"), (2, "bob")):
                await conn.execute(sa.text(
                    "INSERT INTO users (id, name, created_ms) VALUES (:id, :name, 0)"),
                    {"id": user_id, "name": name})
            for path, parent, kind, owner in (("team", "", "dir", 1),
                                              ("team/sub", "team", "dir", 2),
                                              ("team/sub/x.csv", "team/sub", "file", 2),
                                              ("bobs", "", "dir", 2),
                                              ("bobs/y.csv", "bobs", "file", 2)):
                await conn.execute(sa.text(
                    "INSERT INTO lake_entries (path, parent, name, kind, owner_id, size, "
                    "created_ms, modified_ms, archived) VALUES (:path, :parent, :name, :kind, "
                    ":owner, 0, 0, 0, false)"),
                    {"path": path, "parent": parent, "name": path.rsplit("/", 1)[-1],
                     "kind": kind, "owner": owner})
        await old.close()
        async with Store(empty_store_url) as store, store.connect() as conn:  # migrates to the head
            rows = await conn.execute(sa.text(
                "SELECT e.path, u.name FROM lake_entries e JOIN users u ON u.id = e.owner_id"))
            admin = (await conn.execute(sa.text("SELECT admin FROM users"))).scalars().all()
            assert admin == [False, False]
            return dict(rows.all())

    owners = asyncio.run(scenario())
    assert owners == {"team": "alice", "team/sub": "alice", "team/sub/x.csv": "alice",
                      "bobs": "bob", "bobs/y.csv": "bob"}
