"""Each app in its own Python environment, built from its ``requirements.txt`` with uv.

An app folder with a ``requirements.txt`` runs with the interpreter of a virtual environment
under ``$LAKEPORT_HOME/app-envs/<key>/``, where the key is a hash of the file's bytes, the
Python version and whether the app imports lakeport. The environment is built once (uv's
package cache makes a rebuild fast), reused by every later run, and a new one is built when
the file changes. Builds of the same key wait for each other (a lock file), and an
environment counts as built only once its marker file is written, so an interrupted build is
started again.

An app that imports ``lakeport`` gets lakeport's own packages after its own ones (a ``.pth``
file), so ``lakeport.apps`` is importable without installing lakeport again; requirements that
lakeport's environment already meets (``lakeport>=0.1``, ``pyarrow>=14``) are used from there
and only the others are installed, first on the path. Any other app sees only what its
requirements install. A folder without a ``requirements.txt`` runs with lakeport's
interpreter.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from lakeport.errors import Invalid
from lakeport.home import file_lock, lakeport_home

REQUIREMENTS = "requirements.txt"
READY = ".lakeport-ready"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Environment:
    """Where an app's code runs: ``python`` is the interpreter to start it with."""

    python: Path
    folder: Path | None = None  # None: lakeport's own interpreter
    built: bool = False  # True when this call built it (False: reused or none needed)


def environments_folder() -> Path:
    return lakeport_home() / "app-envs"


def imported_modules(folder: str | Path) -> set[str]:
    """The top-level module names the app's ``.py`` files import (files that do not parse
    are skipped: the app reports its own syntax errors when it starts)."""
    names: set[str] = set()
    for path in Path(folder).rglob("*.py"):
        if any(part.startswith(".") or part in ("venv", "__pycache__") for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def environment_key(requirements: bytes, with_lakeport: bool) -> str:
    """The cache key: the requirements' bytes, this Python and whether lakeport is added."""
    digest = hashlib.sha256()
    for part in (requirements, sys.version.encode(), sys.base_prefix.encode(),
                 b"lakeport" if with_lakeport else b"-"):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def ensure_environment(folder: str | Path, *, on_progress: Progress | None = None,
                       root: Path | None = None) -> Environment:
    """The app's environment, built from its requirements.txt when it is not built yet.

    Raises :class:`Invalid` with one line (the requirement uv could not install, or could
    not parse) when the build fails.
    """
    folder = Path(folder)
    requirements = folder / REQUIREMENTS
    if not requirements.is_file():
        return Environment(Path(sys.executable))
    try:
        wanted = requirements.read_bytes()
    except OSError as exc:
        raise Invalid(f"{requirements}: cannot read it ({exc.strerror})") from None
    with_lakeport = "lakeport" in imported_modules(folder)
    if with_lakeport:
        wanted = unmet_requirements(wanted.decode("utf-8", "replace"), folder.resolve()).encode()
    target = (root or environments_folder()) / environment_key(wanted, with_lakeport)
    python = target / "bin" / "python"
    say = on_progress or (lambda line: None)
    with file_lock(target.with_suffix(".lock")):
        if (target / READY).is_file():
            return Environment(python, target)
        say(f"building the app's environment from {requirements} in {target} (once per "
            "version of the file)")
        shutil.rmtree(target, ignore_errors=True)
        try:
            _uv(["venv", "--quiet", "--python", sys.executable, str(target)], requirements,
                say)
            install = target / REQUIREMENTS
            install.write_bytes(wanted)
            if wanted.strip():
                _uv(["pip", "install", "--compile-bytecode", "--python", str(python), "-r",
                     str(install)],
                    requirements, say)
            if with_lakeport:
                _add_lakeport(python)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / READY).write_text(str(requirements.resolve()) + "\n")
    say(f"environment ready: {target}")
    return Environment(python, target, built=True)


def unmet_requirements(text: str, base: Path) -> str:
    """The lines of a requirements file that lakeport's own environment does not meet.

    A plain requirement (``name[extras] <specifier>``, markers evaluated) that an installed
    distribution here satisfies is dropped; options, URLs, editables and anything that does
    not parse are kept for uv to handle (and report), with paths made absolute from
    ``base`` (the file's folder)."""
    kept = []
    for line in text.splitlines():
        bare = line.split(" #", 1)[0].strip()
        if not bare or bare.startswith("#"):
            continue
        if not _met_here(bare):
            kept.append(_absolute_paths(bare, base))
    return "\n".join(kept) + ("\n" if kept else "")


def _absolute_paths(line: str, base: Path) -> str:
    """``-r more.txt`` → ``-r /app/more.txt``; ``./pkg`` → ``/app/pkg``."""
    option, _, rest = line.partition(" ")
    rest = rest.strip()
    if option in ("-r", "-c", "-e", "--requirement", "--constraint", "--editable") and rest \
            and not rest.startswith("/") and "://" not in rest and "+" not in rest:
        return f"{option} {base / rest}"
    if line.startswith(("./", "../")):
        return str(base / line)
    return line


def _met_here(line: str) -> bool:
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return False
    if requirement.url:
        return False
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(installed, prereleases=True)




def _uv(args: list[str], requirements: Path, say: Progress) -> None:
    """Run uv, passing its progress lines on; a failure becomes one line naming the file."""
    from uv import find_uv_bin

    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("VIRTUAL_ENV", None)
    process = subprocess.Popen([find_uv_bin(), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        line = line.rstrip()
        if line:
            lines.append(line)
            say(line.strip())
    if process.wait() != 0:
        raise Invalid(f"{requirements}: cannot build the app's environment: "
                      f"{uv_failure(lines)}")


def uv_failure(lines: list[str]) -> str:
    """uv's error and its first cause on one line."""
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    causes = [line.strip().removeprefix("cause:").strip() for line in lines
              if line.strip().startswith("cause:")]
    text = ": ".join(part.rstrip(".") for part in (errors[:1] + causes[:1])) if errors else \
        (lines[-1].strip() if lines else "uv failed")
    return " ".join(text.split())


def _add_lakeport(python: Path) -> None:
    """Put lakeport's own package folders after the environment's (a .pth file)."""
    output = subprocess.run([str(python), "-c", "import sysconfig; "
                             "print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    ours = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    package = Path(__file__).resolve().parents[2]  # .../src for a source checkout
    if (package / "lakeport" / "__init__.py").is_file():
        ours.insert(0, str(package))
    lines = list(dict.fromkeys(ours))
    Path(output, "_lakeport.pth").write_text("\n".join(lines) + "\n")


__all__ = ["Environment", "ensure_environment", "environments_folder", "imported_modules",
           "unmet_requirements"]
