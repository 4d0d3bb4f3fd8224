"""The ``engine`` fixture of tests that run on the in-process and the embedded engine."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lakeport.streams import Engine, open_engine


@pytest.fixture(params=["memory", "file"], name="engine")
async def memory_or_file_engine(request: pytest.FixtureRequest,
                                tmp_path: Path) -> AsyncIterator[Engine]:
    """A fresh memory engine, then an embedded engine in the test's folder."""
    url = f"memory://{uuid.uuid4().hex}" if request.param == "memory" else \
        (tmp_path / "streams").as_uri()
    async with open_engine(url) as opened:
        yield opened
