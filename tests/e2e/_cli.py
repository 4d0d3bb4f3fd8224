"""What the command-line tests share: how to start ``lakeport`` and what a user error looks like."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_SCRIPT = Path(sys.executable).parent / "lakeport"
LAKEPORT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lakeport.cli"]
"""The ``lakeport`` command of the Python running the tests."""


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """One line ``error: ...`` on stderr, exit code 1, no traceback; return the line."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]
