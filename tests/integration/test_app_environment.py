"""Each app in its own environment: built from requirements.txt with uv, cached by the
file's hash, rebuilt when it changes, one clear line when a requirement cannot be installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lakeport.apps.environment import ensure_environment, unmet_requirements
from lakeport.errors import Invalid

pytestmark = pytest.mark.timeout(300)


def app_folder(tmp_path: Path, requirements: str, code: str = "print('hi')\n") -> Path:
    folder = tmp_path / "app"
    folder.mkdir(exist_ok=True)
    (folder / "requirements.txt").write_text(requirements)
    (folder / "main.py").write_text(code)
    return folder


def run_in(python: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_an_app_gets_what_its_requirements_name_and_nothing_of_lakeports(
        tmp_path: Path) -> None:
    folder = app_folder(tmp_path, "six==1.16.0\n")
    lines: list[str] = []
    built = ensure_environment(folder, on_progress=lines.append, root=tmp_path / "envs")
    assert built.built and built.python != Path(sys.executable)
    assert run_in(built.python, "import six; print(six.__version__)").stdout == "1.16.0\n"
    isolated = run_in(built.python, "import pyarrow")
    assert isolated.returncode != 0 and "No module named 'pyarrow'" in isolated.stderr
    assert any("building the app's environment" in line for line in lines), lines

    again = ensure_environment(folder, root=tmp_path / "envs")
    assert (again.python, again.built) == (built.python, False)

    (folder / "requirements.txt").write_text("six==1.15.0\n")
    changed = ensure_environment(folder, root=tmp_path / "envs")
    assert changed.built and changed.folder != built.folder
    assert run_in(changed.python, "import six; print(six.__version__)").stdout == "1.15.0\n"


def test_an_app_that_imports_lakeport_gets_it_with_its_own_pins_first(tmp_path: Path) -> None:
    folder = app_folder(tmp_path, "lakeport>=0.1.0\npyarrow>=14\nsix==1.15.0\n",
                        "from lakeport.apps import App\n")
    environment = ensure_environment(folder, root=tmp_path / "envs")
    assert environment.folder is not None
    assert (environment.folder / "requirements.txt").read_text() == "six==1.15.0\n"
    probe = run_in(environment.python,
                   "import lakeport.apps, pyarrow, six; print(six.__version__)")
    assert probe.stdout == "1.15.0\n", probe.stderr


def test_a_requirement_that_does_not_exist_is_one_line_and_nothing_is_kept(
        tmp_path: Path) -> None:
    folder = app_folder(tmp_path, "six==1.16.0\nno-such-package-lakeport-test==1.0\n")
    with pytest.raises(Invalid) as caught:
        ensure_environment(folder, root=tmp_path / "envs")
    message = str(caught.value)
    assert "\n" not in message
    assert "requirements.txt" in message and "no-such-package-lakeport-test" in message
    assert not any((tmp_path / "envs").glob("*/bin/python"))

    (folder / "requirements.txt").write_text("six==1.16.0\n")
    assert ensure_environment(folder, root=tmp_path / "envs").built


def test_a_line_that_does_not_parse_names_the_file(tmp_path: Path) -> None:
    folder = app_folder(tmp_path, "six = = 1\n")
    with pytest.raises(Invalid, match=r"requirements.txt: cannot build .*parse"):
        ensure_environment(folder, root=tmp_path / "envs")


def test_a_folder_without_requirements_runs_with_lakeports_interpreter(
        tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    environment = ensure_environment(folder, root=tmp_path / "envs")
    assert (environment.python, environment.folder) == (Path(sys.executable), None)


def test_relative_includes_point_into_the_app_folder() -> None:
    text = "lakeport>=0.1\n-r more.txt\n./wheels/x.whl\n--index-url https://pypi.org/simple\n"
    assert unmet_requirements(text, Path("/srv/app")).splitlines() == [
        "-r /srv/app/more.txt", "/srv/app/wheels/x.whl", "--index-url https://pypi.org/simple"]
