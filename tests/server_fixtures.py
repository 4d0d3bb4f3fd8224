"""Fixtures for tests of the platform server: a fresh store per test (SQLite, PostgreSQL) and a
real server (uvicorn) on a free loopback port.

``store_url`` runs a test once per store: a SQLite file, and a database created on the
machine's PostgreSQL (127.0.0.1:5432, user postgres; ``LAKEPORT_TEST_POSTGRES`` overrides) and
dropped afterwards. ``platform`` starts the server on that store with a lake folder and an
embedded topic engine of the test's own, and hands out API keys.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import require_service

PG_ADMIN = os.environ.get("LAKEPORT_TEST_POSTGRES",
                          "postgresql://postgres@127.0.0.1:5432/postgres")
STORES = ("sqlite", "postgresql")


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    from lakeport.server.store import Store

    async with Store(url):
        pass


_templates: dict[str, str] = {}


def _template(kind: str) -> str:
    """A store of ``kind`` migrated to the latest schema, made once per test process: a test's
    store starts as a copy of it, which is faster than running every migration again."""
    if kind in _templates:
        return _templates[kind]
    name = f"lakeport_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="lakeport-template-")) / "lakeport.db"
        asyncio.run(_migrate(f"sqlite:///{path}"))
        atexit.register(shutil.rmtree, path.parent, True)
        _templates[kind] = str(path)
    else:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
        atexit.register(asyncio.run, _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(_migrate(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"))
        _templates[kind] = name
    return _templates[kind]


def postgres_database(migrated: bool = True) -> Iterator[str]:
    """A new PostgreSQL database for one test, at the latest schema (``migrated``) or empty;
    its URL."""
    name = f"lakeport_test_{uuid.uuid4().hex[:12]}"
    try:
        template = f' TEMPLATE "{_template("postgresql")}"' if migrated else ""
        asyncio.run(_pg(f'CREATE DATABASE "{name}"{template}'))
    except Exception as exc:  # asyncpg or the socket: either way the service is not there
        require_service("PostgreSQL", f"cannot create a database at {PG_ADMIN} ({exc})")
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sqlite_store(folder: Path) -> str:
    """The URL of a SQLite store under ``folder`` at the latest schema."""
    path = folder / "store" / "lakeport.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template("sqlite"), path)
    return f"sqlite:///{path}"


@pytest.fixture(params=[pytest.param(kind, id=kind) for kind in STORES])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh platform store URL at the latest schema, once per store kind."""
    if request.param == "sqlite":
        yield sqlite_store(tmp_path)
    else:
        yield from postgres_database()


@pytest.fixture(params=[pytest.param(kind, id=kind) for kind in STORES])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A platform store URL with no schema yet (for tests of the migrations), per store kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'lakeport.db'}"
    else:
        yield from postgres_database(migrated=False)


class ServerThread:
    """The server of ``settings`` in a thread with its own event loop, on a free port; uvicorn
    runs as ``lakeport serve`` runs it (the same ``server_config``)."""

    def __init__(self, settings: Any) -> None:
        import uvicorn

        from lakeport.server.runner import server_config
        from servers import free_port

        self.port = free_port()
        settings = settings.model_copy(update={"host": "127.0.0.1", "port": self.port})
        self.server = uvicorn.Server(server_config(settings, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the lakeport server did not start (see the log above)")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Platform:
    """A running server: its URL, settings and API keys (``api_key`` belongs to alice)."""

    url: str
    settings: Any
    api_key: str
    app: Any = None
    """The server's FastAPI app (it runs in this process): ``app.state.key_cache``, ..."""

    def key_for(self, user: str) -> str:
        """A new API key for ``user`` (created when new)."""
        from lakeport.server.store import Store
        from lakeport.server.store.users import create_key

        async def make() -> str:
            async with Store(self.settings.store_url) as store:
                return await create_key(store, user)

        return asyncio.run(make())

    def client(self, key: str | None = "alice", **options: Any) -> httpx.Client:
        """An HTTP client on the server; ``key`` is an API key, a user name, or None."""
        headers = {}
        if key is not None:
            headers["x-api-key"] = self.api_key if key == "alice" else (
                key if key.startswith("lpk_") else self.key_for(key))
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **options)


def platform_settings(store_url: str, folder: Path, **options: Any) -> Any:
    """Server settings on ``store_url`` with a lake folder and topics of their own."""
    from lakeport.server import ServerSettings

    options.setdefault("lake_url", (folder / "lake").as_uri())
    return ServerSettings(store_url=store_url, streams_url=(folder / "streams").as_uri(),
                          port=0, **options)


@contextlib.contextmanager
def running_platform(settings: Any) -> Iterator[Platform]:
    """A server for ``settings`` on a free port, with an API key for alice."""
    with ServerThread(settings) as server:
        platform = Platform(f"http://127.0.0.1:{server.port}", settings, "",
                            server.server.config.app)
        platform.api_key = platform.key_for("alice")
        yield platform


@pytest.fixture
def platform(store_url: str, tmp_path: Path) -> Iterator[Platform]:
    """A lakeport server on a fresh store, lake folder and embedded topic engine."""
    with running_platform(platform_settings(store_url, tmp_path)) as started:
        yield started


__all__ = ["STORES", "Platform", "ServerThread", "empty_store_url", "platform",
           "platform_settings", "postgres_database", "running_platform", "sqlite_store",
           "store_url"]
