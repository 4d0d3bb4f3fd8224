"""The lakeport home folder (``LAKEPORT_HOME``, default ``~/.lakeport``) holding embedded state."""

from __future__ import annotations

import os
from pathlib import Path


def home_folder() -> Path:
    """The lakeport home folder, without creating it."""
    return Path(os.environ.get("LAKEPORT_HOME") or Path.home() / ".lakeport").expanduser()


def lakeport_home() -> Path:
    """Return the lakeport home folder, creating it when missing."""
    home = home_folder()
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_streams_url() -> str:
    """The streams URL used when none is given: ``LAKEPORT_STREAMS`` or the embedded engine."""
    return os.environ.get("LAKEPORT_STREAMS") or (lakeport_home() / "streams").as_uri()
