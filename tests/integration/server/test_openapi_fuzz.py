"""Schemathesis against the server's OpenAPI document: no request it generates gets a 5xx or
takes longer than a bound, with the schema's examples and with widened ones, and in sequences
that follow the document's links (create a sensor, topic or file, then read, change, delete it).

A bounded number of examples per operation (``LAKEPORT_FUZZ_EXAMPLES``, default 10; half as
many in the widened pass, whose values are odder rather than more) keeps the suite quick; a
deterministic seed makes a failure reproducible.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from server_fixtures import Platform

EXAMPLES = int(os.environ.get("LAKEPORT_FUZZ_EXAMPLES", "10"))
MIN_OPERATIONS = 50  # of the 54 operations: a route lost from the document fails the test
SLOWEST = 10
"""Seconds a response may take: a slower one fails the run (a request that hangs)."""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("wide", [False, True], ids=["schema", "wide"])
def test_no_generated_request_gets_a_server_error(platform: Platform, tmp_path: Path,
                                                  wide: bool) -> None:
    """``wide`` also turns generated integers and strings into far larger and odder ones
    (fuzz_hooks.py)."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{platform.url}/openapi.json",
        "--checks", "not_a_server_error", "--max-response-time", str(SLOWEST),
        "--max-examples", str(max(5, EXAMPLES // 2) if wide else EXAMPLES),
        "--seed", "20261129",
        "--header", f"x-api-key: {platform.api_key}", "--request-timeout", "30",
        "--workers", "1", "--exclude-path-regex", "consume$",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    if wide:
        env["SCHEMATHESIS_HOOKS"] = "fuzz_hooks"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                          env.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, timeout=570, env=env)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    tested = re.search(r"Tested:\s+(\d+)", done.stdout)
    assert tested and int(tested.group(1)) >= MIN_OPERATIONS, done.stdout[-3000:]
    stateful = re.search(r"^.*Stateful.*$", done.stdout, re.MULTILINE)
    assert stateful and "disabled" not in stateful[0] and "skipped" not in stateful[0].lower(), \
        "the stateful phase (create, then follow the document's links) did not run: " + \
        done.stdout[-3000:]
