"""A server under abusive load keeps its memory and keeps answering, on SQLite and PostgreSQL.

``lakeport serve`` runs as its own process. One user sends, all at once: 300 MB declared
bodies with and without an API key (streamed, stopped once answered), slowloris connections
sending their headers a byte at a time, and WebSocket consumers of a topic of 1 MiB messages
that keep asking and never read their replies. The server's RSS may grow by one fetch reply
per such consumer (what its socket could not take) and 64 MiB for the rest; another user's
requests must all be answered (none fails or goes unanswered for 15 s) throughout, and every
connection must end with an answer (never a 500) or a close while the load lasts. How fast
another user is answered under this load is a figure of bench/abuse.py, not a test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from _abuse_load import (
    API,
    BIG_BODIES,
    CONSUMERS,
    MALLOC_ENV,
    MESSAGE,
    MESSAGES,
    Outcome,
    load,
    warm_up,
)
from servers import lakeport_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

HEADER_TIMEOUT = 3.0
FETCH_REPLY = 4 << 20  # the server's max_fetch_bytes (the default)
RSS_BOUND = CONSUMERS * FETCH_REPLY + (64 << 20)  # one reply per idle consumer at most


def lakeport(home: Path, store_url: str, *args: str) -> str:
    env = {**os.environ, "LAKEPORT_HOME": str(home), "LAKEPORT_STORE": store_url}
    done = subprocess.run([sys.executable, "-m", "lakeport.cli", *args], env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


async def warm_up_and_load(url: str, pid: int, key: str, other: str, topic: str) -> Outcome:
    assert await warm_up(url, key, topic) == (401, 413, 200)
    return await load(url, pid, key, other, topic)


def test_abusive_load_keeps_memory_bounded_and_answers(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = lakeport(home, store_url, "keys", "create", "--user", "load")
    other = lakeport(home, store_url, "keys", "create", "--user", "other")
    env = {**os.environ, "LAKEPORT_HOME": str(home), "LAKEPORT_STORE": store_url, **MALLOC_ENV}
    command = [sys.executable, "-m", "lakeport.cli", "serve", "--workers", "0",
               "--header-timeout", str(HEADER_TIMEOUT)]
    with lakeport_server(command, env=env) as (url, process), \
            httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as http:
        assert http.put(f"{API}/topics/big").status_code == 201
        payload = "m" * MESSAGE
        for _ in range(MESSAGES):
            assert http.post(f"{API}/topics/big/messages",
                             json={"payload": payload}).status_code == 200
        outcome = asyncio.run(warm_up_and_load(url, process.pid, key, other, "big"))
        # a new connection: the set-up's keep-alive one was closed by the server meanwhile
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
    statuses = [status for status, _ in outcome.bodies]
    assert sorted(statuses) == [401] * (BIG_BODIES // 2) + [413] * (BIG_BODIES // 2)
    assert {code for _, code in outcome.bodies} == {"unauthorized", "too_large"}
    for status, after in outcome.slow:
        assert status in (408, None) and after is not None, (status, after)  # closed
    assert any(status == 408 for status, _ in outcome.slow)
    took = outcome.probe.took
    assert not outcome.probe.failed, f"another user's requests failed: {outcome.probe.failed}"
    assert took, "another user's requests were never answered"
    grown = outcome.peak - outcome.baseline
    assert grown < RSS_BOUND, (f"RSS grew by {grown >> 20} MiB "
                               f"(baseline {outcome.baseline >> 20} MiB)")
