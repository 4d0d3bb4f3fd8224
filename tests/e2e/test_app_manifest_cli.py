"""``lakeport app validate|schema|manifest|deploy`` and ``lakeport secret`` as a user runs them."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from e2e._cli import LAKEPORT, assert_user_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apps"
SECRET_VALUE = "Sup3r-s3cret-value"


def lakeport(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAKEPORT, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, stdin=None if stdin is not None else subprocess.DEVNULL)


@pytest.fixture
def exporter(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "exporter", tmp_path / "uploader"))


def create_exporter_secrets() -> None:
    for name in ("azure-account-name", "azure-account-key"):
        assert lakeport("secret", "create", name, "--value", SECRET_VALUE).returncode == 0
    created = lakeport("secret", "create", "azure-storage-container", "--from-stdin",
                       stdin=SECRET_VALUE + "\n")
    assert created.returncode == 0, created.stderr


def test_validate_a_valid_app(exporter: Path):
    create_exporter_secrets()
    result = lakeport("app", "validate", str(exporter))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "✓ azure-data-lake-uploader (exporter) is valid\n"


def test_validate_prints_every_problem_with_its_path(exporter: Path):
    text = (exporter / "app.yaml").read_text()
    text = text.replace("        type: persistent", "        type: tmpfs")
    text = text.replace("  system:\n", "  system:\n    replicas: 2\n")
    (exporter / "app.yaml").write_text(text)
    lakeport("secret", "create", "azure-account-name", "--value", "n")
    lakeport("secret", "create", "azure-storage-container", "--value", "c")

    result = lakeport("app", "validate", str(exporter))
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "defaults.system.volumes[0].type: must be one of persistent, host, text (got 'tmpfs')",
        "defaults.system.replicas: unknown key",
        "defaults.system.environment_vars[1].value: secret 'azure-account-key' does not exist: "
        "create it with lakeport secret create azure-account-key --value ...",
    ]
    assert result.stderr.splitlines() == [
        "warning: exporter_io[0].control: not used by type exporter (the vendor's format "
        "ignores it)",
        f"error: 3 problems in {exporter}"]


def test_validate_prints_warnings_and_exits_0(exporter: Path):
    create_exporter_secrets()
    text = (exporter / "app.yaml").read_text().replace("name: azure-data-lake-uploader\n",
                                                        "name: azure-data-lake-uploader\n"
                                                        "colour: blue\n")
    (exporter / "app.yaml").write_text(text)
    result = lakeport("app", "validate", str(exporter))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "✓ azure-data-lake-uploader (exporter) is valid\n"
    assert "warning: colour: not used (the vendor's format ignores it)" in \
        result.stderr.splitlines()


def test_validate_names_the_old_format_in_one_line(tmp_path: Path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "app.yaml").write_text(
        "spec_version: 4.12.0\ninfo: {name: old, title: Old, description: d, version: 1.0.0}\n"
        "app:\n  type: kelvin\n  kelvin:\n    inputs: [{name: t, data_type: raw.float32}]\n")
    result = lakeport("app", "validate", str(folder))
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1
    assert result.stdout.startswith("spec_version: 4.12.0: the old app.yaml format; ")


def test_validate_reports_yaml_errors_with_line_and_column(exporter: Path):
    (exporter / "app.yaml").write_text("name: demo\ntype: [exporter\n")
    result = lakeport("app", "validate", str(exporter / "app.yaml"))
    assert result.returncode == 1
    assert result.stdout.startswith("app.yaml line 3, column 1: ")


def test_validate_checks_the_configuration_given_with_config_and_set(exporter: Path,
                                                                     tmp_path: Path):
    create_exporter_secrets()
    config = tmp_path / "config.yaml"
    config.write_text("upload_interval: 30\n")
    assert lakeport("app", "validate", str(exporter), "--config", str(config)).returncode == 0
    result = lakeport("app", "validate", str(exporter), "--config", str(config),
                      "--set", "upload_interval=-5")
    assert result.returncode == 1
    assert result.stdout == "configuration.upload_interval: -5 is less than the minimum of 0\n"


def test_schema_prints_the_json_schema(tmp_path: Path):
    result = lakeport("app", "schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert {"spec_version", "type", "name", "exporter_io"} <= set(schema["properties"])
    output = tmp_path / "app.schema.json"
    assert lakeport("app", "schema", "--output", str(output)).returncode == 0
    assert json.loads(output.read_text()) == schema


def test_manifest_prints_the_resolved_manifest_with_secrets_masked(exporter: Path):
    create_exporter_secrets()
    result = lakeport("app", "manifest", str(exporter), "--set", "upload_interval=15")
    assert result.returncode == 0, result.stderr
    assert SECRET_VALUE not in result.stdout + result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["defaults"]["configuration"] == {"upload_interval": 15}
    assert {e["value"] for e in resolved["defaults"]["system"]["environment_vars"]} == {"***"}
    assert resolved["flags"] == {"enable_runtime_update": {"configuration": False}}
    assert "control" not in resolved["exporter_io"][0]  # an exporter's IO takes no control


def test_deploy_writes_kubernetes_and_compose_files(exporter: Path, tmp_path: Path):
    create_exporter_secrets()
    output = tmp_path / "k8s.yaml"
    result = lakeport("app", "deploy", str(exporter), "--format", "kubernetes",
                      "--output", str(output), "--image", "registry.local/uploader:1.0.0")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(output.read_text()))
    deployment = documents[0]
    assert deployment["kind"] == "Deployment"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/uploader:1.0.0"
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "azure-account-name",
                                                                "key": "value"}
    assert SECRET_VALUE not in output.read_text()

    result = lakeport("app", "deploy", str(exporter), "--format", "compose")
    assert result.returncode == 0, result.stderr
    service = yaml.safe_load(result.stdout)["services"]["azure-data-lake-uploader"]
    assert service["image"] == "azure-data-lake-uploader:1.0.0"
    assert service["privileged"] is True
    assert SECRET_VALUE not in result.stdout


def test_deploy_refuses_an_invalid_app(exporter: Path):
    (exporter / "app.yaml").write_text((exporter / "app.yaml").read_text()
                                       .replace("type: host", "type: hots"))
    result = lakeport("app", "deploy", str(exporter), "--format", "compose")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout == ("defaults.system.ports[0].type: must be one of host, service "
                             "(got 'hots')\n")


def test_secret_commands_round_trip(lakeport_home: Path):
    assert lakeport("secret", "create", "azure-key", "--value", SECRET_VALUE).returncode == 0
    created = lakeport("secret", "create", "db-password", "--from-stdin", stdin="pw\n")
    assert created.returncode == 0, created.stderr
    store = lakeport_home / "secrets.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600

    listed = lakeport("secret", "list")
    assert listed.returncode == 0
    assert listed.stdout == "azure-key\ndb-password\n"
    assert SECRET_VALUE not in listed.stdout + listed.stderr

    assert lakeport("secret", "update", "azure-key", "--value", "rotated").returncode == 0
    assert json.loads(store.read_text()) == {"azure-key": "rotated", "db-password": "pw"}
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert lakeport("secret", "delete", "azure-key").returncode == 0
    assert lakeport("secret", "list").stdout == "db-password\n"


@pytest.mark.parametrize(("args", "fragments"), [
    (["secret", "create", "Azure_Key", "--value", SECRET_VALUE], ["secret name 'Azure_Key'"]),
    (["secret", "create", "key"], ["--value", "--from-stdin"]),
    (["secret", "update", "missing", "--value", SECRET_VALUE],
     ["secret 'missing' does not exist", "lakeport secret create missing"]),
    (["secret", "delete", "missing"], ["secret 'missing' does not exist"]),
], ids=["bad-name", "no-value", "update-missing", "delete-missing"])
def test_secret_mistakes_are_one_line(args: list[str], fragments: list[str]):
    result = lakeport(*args)
    assert_user_error(result, *fragments)
    assert SECRET_VALUE not in result.stdout + result.stderr


def test_creating_an_existing_secret_is_one_line():
    assert lakeport("secret", "create", "azure-key", "--value", "a").returncode == 0
    result = lakeport("secret", "create", "azure-key", "--value", SECRET_VALUE)
    assert_user_error(result, "already exists", "lakeport secret update azure-key")
    assert SECRET_VALUE not in result.stderr
