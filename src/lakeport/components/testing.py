"""``lakeport component test``: run every case folder of a component (``tests/<case>/source/
data`` → ``expected/data``) and compare output tables, files, manifests, state, usage and the
exit code (``expected/exit_code``, 0 when absent)."""

from __future__ import annotations

import difflib
import json
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lakeport.components.job import Job, component_env
from lakeport.components.runner import run_process
from lakeport.errors import Invalid


def resolve_command(component_dir: Path, command: str | None) -> list[str]:
    """The component's command: ``--command`` when given, else ``python main.py`` when
    ``main.py`` exists, else ``python src/component.py`` (the usual layout of the public
    component template); the interpreter is the one running lakeport."""
    if command:
        return shlex.split(command)
    for entry in ("main.py", "src/component.py"):
        if (component_dir / entry).is_file():
            return [sys.executable, entry]
    raise Invalid(f"{component_dir}: no main.py or src/component.py; give the command with "
                  "--command")


@dataclass
class CaseResult:
    """The outcome of one case."""

    name: str
    differences: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.differences


def _files(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _text(path: Path) -> list[str]:
    text = path.read_text(errors="replace").replace("\r\n", "\n")
    if path.suffix in (".json", ".manifest"):
        try:
            text = json.dumps(json.loads(text), indent=2, sort_keys=True) if text.strip() else ""
        except json.JSONDecodeError:
            pass
    return text.splitlines(keepends=True)


def compare_out(expected: Path, actual: Path) -> list[str]:
    """Differences between two ``out`` folders, as readable diffs."""
    want, got = _files(expected), _files(actual)
    differences: list[str] = []
    for name in sorted(set(want) | set(got)):
        if name not in got:
            differences.append(f"missing: out/{name}")
        elif name not in want:
            differences.append(f"unexpected: out/{name}")
        else:
            a, b = _text(want[name]), _text(got[name])
            if a != b:
                diff = difflib.unified_diff(a, b, f"expected/out/{name}", f"actual/out/{name}")
                differences.append("".join(diff).rstrip("\n"))
    return differences


def run_case(case: Path, component_dir: Path, command: Sequence[str],
             timeout: float) -> CaseResult:
    """Run one case folder in a copy of its ``source/data`` and compare."""
    result = CaseResult(case.name)
    with tempfile.TemporaryDirectory(prefix="lakeport-case-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(case / "source" / "data", data)
        for sub in ("in/tables", "in/files", "out/tables", "out/files"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        job = Job(id="test", run_id="test", component_id=component_dir.name,
                  config_id=f"test-{case.name}")
        outcome = run_process(command, component_dir, component_env(data, job), timeout,
                              lambda line: line, lambda stream, line: None)
        code_file = case / "expected" / "exit_code"
        want_code = int(code_file.read_text().strip()) if code_file.exists() else 0
        if outcome.timed_out:
            result.differences.append(f"timed out after {timeout:g} s")
        elif outcome.exit_code != want_code:
            tail = "\n".join(outcome.stderr_tail[-5:])
            result.differences.append(f"exit code {outcome.exit_code}, expected {want_code}"
                                      + (f"\n{tail}" if tail else ""))
        result.differences += compare_out(case / "expected" / "data" / "out", data / "out")
    return result


def run_cases(component_dir: Path, command: Sequence[str],
              timeout: float = 600.0) -> list[CaseResult]:
    """Run every case under ``<component>/tests``."""
    cases = sorted(p for p in (component_dir / "tests").glob("*")
                   if (p / "source" / "data").is_dir())
    if not cases:
        raise Invalid(f"{component_dir}/tests: no case folders (tests/<case>/source/data)")
    return [run_case(case, component_dir, command, timeout) for case in cases]
