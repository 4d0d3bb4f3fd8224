"""The ``lakeport`` command starts without importing the engines, the client or the server:
building the command line imports only what every command needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakeport.cli.common import FormatChoice, ModeChoice, PersistenceChoice
from lakeport.streams.types import Format, Mode, Persistence

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("pyarrow", "numpy", "pandas", "polars", "httpx", "sqlalchemy", "fastapi", "uvicorn",
         "pydantic", "lakeport.streams", "lakeport.export", "lakeport.client",
         "lakeport.server", "lakeport.tasks")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_importing_the_command_line_imports_nothing_heavy() -> None:
    done = _python("import json, sys\nimport lakeport.cli.main\n"
                   "lakeport.cli.main.build_app()  # every command, as lakeport --help has it\n"
                   "print(json.dumps(sorted(sys.modules)))")
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    heavy = [name for name in loaded
             if any(name == top or name.startswith(f"{top}.") for top in HEAVY)]
    assert not heavy, f"lakeport.cli.main imports {heavy}"


def test_a_command_line_builds_only_the_command_it_runs() -> None:
    done = _python("import json, sys\nfrom lakeport.cli.main import main\n"
                   "try:\n    main(['topics', '--help'])\nexcept SystemExit:\n    pass\n"
                   "print(json.dumps(sorted(sys.modules)))")
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "lakeport.cli.topics" in loaded
    assert not loaded & {"lakeport.cli.tasks", "lakeport.cli.files", "lakeport.cli.rules"}


def test_a_worker_loads_no_data_libraries() -> None:
    """``lakeport worker`` stays small (bench/tasks.py: idle RSS): as the command starts it,
    with the pool tuning and every runtime, it imports no pyarrow, numpy or engines."""
    done = _python("import json, sys\n"
                   "sys.orig_argv = [sys.executable, '-m', 'lakeport.cli', 'worker']\n"
                   "import lakeport.cli.main, lakeport.tasks.worker, lakeport.tasks.runtimes\n"
                   "print(json.dumps(sorted(sys.modules)))")
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    heavy = sorted(loaded & {"pyarrow", "numpy", "pandas", "polars", "sqlalchemy", "fastapi",
                             "lakeport.streams", "lakeport.apps.app", "lakeport.server"})
    assert not heavy, f"a worker imports {heavy}"


def test_importing_lakeport_imports_nothing_heavy_until_used() -> None:
    done = _python("import sys\nimport lakeport\n"
                   "assert 'pyarrow' not in sys.modules and 'lakeport.streams' not in sys.modules\n"
                   "engine = lakeport.open_engine\n"
                   "assert 'lakeport.streams' in sys.modules\n"
                   "from lakeport import Format\n"
                   "assert Format is sys.modules['lakeport.streams'].Format")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args", [["--help"], ["tasks", "--help"], ["topics", "--help"],
                                  ["topics", "consume", "--help"], ["--version"]])
def test_the_command_still_answers(args: list[str]) -> None:
    environ = {key: value for key, value in os.environ.items() if key != "LAKEPORT_MALLOC_TUNING"}
    done = subprocess.run([sys.executable, "-m", "lakeport.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120, env=environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.mark.parametrize(("choice", "enum"), [(FormatChoice, Format), (ModeChoice, Mode),
                                              (PersistenceChoice, Persistence)])
def test_the_option_choices_are_the_api_enums(choice: type, enum: type) -> None:
    assert [member.value for member in choice] == [member.value for member in enum]
    assert [member.name for member in choice] == [member.name for member in enum]
