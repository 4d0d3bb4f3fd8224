"""``lakeport app create|run`` and ``lakeport app test simulator|csv``."""

from __future__ import annotations

from lakeport.cli.app import app, test_app  # noqa: F401
