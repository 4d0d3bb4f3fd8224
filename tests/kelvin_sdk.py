"""The vendor's Python SDK (``kelvin-python-sdk``) in a Python environment of its own.

``vendor_python`` (session-scoped) is the interpreter of that environment, built once with
:func:`lakeport.apps.environment.ensure_environment` and reused by later sessions. It skips
with the reason when the environment cannot be built (no network, no package index), and fails
instead when ``LAKEPORT_REQUIRE_SERVICES=1``. A test asks for it (or ``kelvin_home``)
by name (tests/conftest.py registers it).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lakeport.apps.environment import ensure_environment
from lakeport.errors import LakeportError

VENDOR_SDK = "kelvin-python-sdk==0.5.0"
# Environments outlive a session (the per-test lakeport home does not): built once per machine.
ENVIRONMENTS = Path(tempfile.gettempdir()) / "lakeport-test-app-envs"

# Parses each app.yaml given as an argument with the vendor's parser and converts it to the
# vendor's platform manifest (what its build and upload do); prints, per file, whether it was
# accepted, the vendor's error and the vendor's reading of the file (with every default).
_CHECK_MANIFESTS = """
import json, sys
from pathlib import Path
from kelvin.config.parser import parse_config_file

verdicts = {}
for name in sys.argv[1:]:
    try:
        parsed = parse_config_file(name)
        parsed.to_app_manifest(Path(name).parent, read_schemas=False)
    except Exception as exc:
        verdicts[name] = {"accepted": False, "error": f"{type(exc).__name__}: {exc}"}
        continue
    reading = parsed.config.model_dump(mode="json", exclude_unset=False, exclude_none=False)
    verdicts[name] = {"accepted": True, "error": None, "reading": reading}
print(json.dumps(verdicts))
"""


@pytest.fixture(scope="session")
def vendor_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a Python environment with the vendor's SDK installed."""
    folder = tmp_path_factory.mktemp("kelvin-sdk")
    (folder / "requirements.txt").write_text(VENDOR_SDK + "\n", encoding="utf-8")
    try:
        environment = ensure_environment(folder, root=ENVIRONMENTS)
    except (LakeportError, OSError) as exc:
        reason = f"cannot build a Python environment with {VENDOR_SDK} ({exc})"
        if os.environ.get("LAKEPORT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}: it is required (LAKEPORT_REQUIRE_SERVICES=1)")
        pytest.skip(f"{reason}: needs network access to the package index")
    return environment.python


def vendor_verdicts(python: Path, files: Sequence[Path]) -> dict[Path, dict[str, Any]]:
    """For each app.yaml, whether the vendor accepts it, its error and its reading."""
    result = subprocess.run([str(python), "-c", _CHECK_MANIFESTS, *map(str, files)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return {Path(name): verdict for name, verdict in json.loads(result.stdout).items()}
