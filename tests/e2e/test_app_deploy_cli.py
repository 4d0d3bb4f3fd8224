"""``lakeport app deploy`` as a user runs it on an app brought from the vendor platform."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e._cli import LAKEPORT, assert_user_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apps"
# the vendor template's Dockerfile, as its export sample ships it
VENDOR_DOCKERFILE = (FIXTURES.parent / "seed_export_app" / "Dockerfile").read_text()


def lakeport(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAKEPORT, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def vendor_app(tmp_path: Path) -> Path:
    """The vendor's exporter (persistent volume target data.db) with its template Dockerfile."""
    folder = Path(shutil.copytree(FIXTURES / "exporter", tmp_path / "uploader"))
    (folder / "Dockerfile").write_text(VENDOR_DOCKERFILE)
    return folder


def service_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]["azure-data-lake-uploader"]


def test_deploy_uses_the_dockerfile_and_warns_about_a_file_volume(vendor_app: Path):
    result = lakeport("app", "deploy", str(vendor_app), "--format", "compose")
    service = service_of(result)
    assert service["volumes"] == [{"type": "volume", "source": "data",
                                   "target": "/opt/kelvin/app"}]
    assert service["environment"]["LAKEPORT_APP_CONFIGURATION"] == '{"upload_interval": 60}'
    warnings = [line for line in result.stderr.splitlines()
                if line.startswith("warning: volume ")]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("warning: volume 'data': its target data.db looks like a "
                                  "file, so its folder /opt/kelvin/app is mounted")


def test_deploy_takes_the_configuration_as_run_does(vendor_app: Path, tmp_path: Path):
    config = tmp_path / "site.yaml"
    config.write_text("upload_interval: 15\naccount: '${NOT_INTERPOLATED}'\n")
    result = lakeport("app", "deploy", str(vendor_app), "--format", "compose", "--config",
                      str(config), "--set", "batch.rows=500")
    assert service_of(result)["environment"]["LAKEPORT_APP_CONFIGURATION"] == (
        '{"upload_interval": 15, "account": "$${NOT_INTERPOLATED}", "batch": {"rows": 500}}')


def test_an_explicit_workdir_wins(vendor_app: Path, tmp_path: Path):
    output = tmp_path / "k8s.yaml"
    result = lakeport("app", "deploy", str(vendor_app), "--format", "kubernetes",
                      "--workdir", "/srv/app", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "folder /srv/app is mounted" in result.stderr
    deployment = next(yaml.safe_load_all(output.read_text()))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["volumeMounts"][0]["mountPath"] == "/srv/app"


def test_help_says_where_the_working_folder_comes_from():
    result = lakeport("app", "deploy", "--help")
    assert result.returncode == 0
    words = result.stdout.replace("│", " ").split()
    assert "last WORKDIR of the app's Dockerfile" in " ".join(words)


def test_a_relative_workdir_is_refused(vendor_app: Path):
    result = lakeport("app", "deploy", str(vendor_app), "--format", "compose",
                      "--workdir", "app")
    assert_user_error(result, "--workdir app: must be an absolute path")


def test_a_dockerfile_workdir_from_a_build_argument_is_refused(vendor_app: Path):
    (vendor_app / "Dockerfile").write_text("FROM python:3.10-slim\nARG HOME_DIR\n"
                                           "WORKDIR $HOME_DIR\n")
    result = lakeport("app", "deploy", str(vendor_app), "--format", "compose")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error == (f"error: {vendor_app / 'Dockerfile'} line 3: $HOME_DIR has no value in "
                     "the Dockerfile (a build argument or the base image sets it): give the "
                     "working folder with --workdir")
