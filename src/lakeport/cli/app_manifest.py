"""``lakeport app validate|schema|manifest|deploy``."""

from __future__ import annotations

from lakeport.cli.app import app  # noqa: F401
