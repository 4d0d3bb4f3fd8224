"""app.yaml: what validates, and every bad input named by its path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lakeport.apps.manifest import (
    Manifest,
    ManifestError,
    Subscription,
    check_app,
    inspect_app,
    load_manifest,
    manifest_json_schema,
)
from lakeport.apps.messages import Boolean, ControlChange, DataTag, Number, String
from lakeport.apps.secrets import SecretStore
from lakeport.errors import Invalid

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apps"
EXPORTER_SECRETS = ("azure-account-name", "azure-account-key", "azure-storage-container")


def copy_app(tmp_path: Path, kind: str) -> Path:
    """A copy of the fixture app ``kind`` that a test may change."""
    return Path(shutil.copytree(FIXTURES / kind, tmp_path / kind))


def edit(folder: Path, change: Any) -> Path:
    """Apply ``change(document)`` to the app's app.yaml."""
    file = folder / "app.yaml"
    document = yaml.safe_load(file.read_text())
    change(document)
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def problems_of(folder: Path, change: Any = None, **kwargs: Any) -> list[str]:
    if change is not None:
        edit(folder, change)
    kwargs.setdefault("check_secrets", False)
    return check_app(folder, **kwargs)


@pytest.fixture
def exporter(tmp_path: Path) -> Path:
    return copy_app(tmp_path, "exporter")


@pytest.fixture
def store(tmp_path: Path) -> SecretStore:
    return SecretStore(tmp_path / "home")


# -- valid manifests of every type ----------------------------------------------------------
def test_the_reference_exporter_is_valid_with_its_secrets(exporter: Path, store: SecretStore):
    for name in EXPORTER_SECRETS:
        store.create(name, f"value of {name}")
    assert check_app(exporter, secrets=store) == []
    manifest = load_manifest(exporter / "app.yaml")
    assert (manifest.type, manifest.name, manifest.version) == (
        "exporter", "azure-data-lake-uploader", "1.0.0")
    assert manifest.folder == exporter.resolve()
    assert manifest.exporter_io[0].data_types == ["number", "string"]
    assert manifest.warnings == [
        "exporter_io[0].control: not used by type exporter (the vendor's format ignores it)"]
    assert manifest.flags.enable_runtime_update.configuration is False
    assert manifest.ui_schemas.configuration == "schemas/configuration.json"
    assert manifest.defaults.configuration == {"upload_interval": 60}
    assert manifest.resources.requests.cpu == "100m"
    assert manifest.resources.limits.memory == "512Mi"
    assert [v.name for v in manifest.volumes] == ["data"]
    assert [(p.name, p.type, p.container_port) for p in manifest.ports] == [
        ("http", "host", 80), ("opcua", "service", 48010)]
    assert manifest.ports[1].service.exposed_port == 30120
    assert manifest.privileged is True
    assert manifest.secret_refs() == list(EXPORTER_SECRETS)
    assert manifest.subscriptions() == [Subscription("asset-data", None, ("number", "string"))]


def test_an_importer_with_host_and_text_volumes_is_valid(tmp_path: Path, store: SecretStore):
    importer = copy_app(tmp_path, "importer")
    store.create("mqtt-password", "hunter2")
    assert check_app(importer, secrets=store) == []
    manifest = load_manifest(importer)
    assert manifest.spec_version == "5.0"
    assert manifest.importer_io[1].control is False
    host, text = manifest.volumes
    assert host.host.source == "/dev/ttyS0"
    assert text.text.data.startswith("[broker]")
    assert manifest.subscriptions() == [
        Subscription("control-changes", None, ("number", "string", "boolean", "object"))]


def test_an_app_with_streams_control_changes_and_parameters_is_valid(tmp_path: Path):
    folder = copy_app(tmp_path, "app")
    assert check_app(folder) == []
    manifest = load_manifest(folder)
    assert manifest.spec_version == "5"
    assert manifest.warnings == [
        "parameters[0].default: not used (the vendor's format ignores it): give the value in "
        "defaults.parameters",
        "spec_version: write 5.0.0 (the vendor's tools refuse 5)"]
    assert [s.name for s in manifest.data_streams.inputs] == ["motor_temperature", "motor_state"]
    assert manifest.data_streams.inputs[0].unit == "°C"
    assert manifest.control_changes.outputs[0].name == "motor_speed_set_point"
    assert [(p.name, p.data_type) for p in manifest.parameters] == [
        ("temperature_max_threshold", "number"), ("closed_loop", "boolean")]
    assert manifest.flags.enable_runtime_update.parameters is True  # the vendor's default
    assert manifest.environment_vars[1].value == "4"  # a YAML number, as an environment value
    assert manifest.subscriptions() == [
        Subscription("asset-data", ("motor_temperature", "motor_state"), None),
        Subscription("control-changes", ("motor_mode",), None),
    ]


def test_a_docker_app_is_valid_and_reads_nothing(tmp_path: Path):
    folder = copy_app(tmp_path, "docker")
    assert check_app(folder) == []
    manifest = load_manifest(folder)
    assert manifest.version == "2.0.0-rc.1"
    assert manifest.subscriptions() == []
    assert manifest.exporter_io == [] and manifest.data_streams.inputs == []


@pytest.mark.parametrize("spec_version", ["5", "5.0", "5.0.0", "5.2.1", 5, 5.0])
def test_spec_version_5_in_every_spelling(exporter: Path, spec_version: Any):
    assert problems_of(exporter, lambda d: d.update(spec_version=spec_version)) == []


def test_the_old_format_is_one_line_that_says_how_to_migrate(exporter: Path):
    problems = problems_of(exporter, lambda d: d.update(spec_version="4.11.0"))
    assert len(problems) == 1
    assert problems[0].startswith("spec_version: 4.11.0: the old app.yaml format; lakeport "
                                  "reads 5.0.0: move info.* to the top level")


def test_a_newer_spec_version_is_named(exporter: Path):
    assert problems_of(exporter, lambda d: d.update(spec_version="6.0.0")) == [
        "spec_version: 6.0.0 is not supported: this lakeport reads spec_version 5 "
        "(such as 5.0.0)"]


# -- bad input, each named by its path ------------------------------------------------------
def test_an_unknown_key_in_system_is_an_error_elsewhere_a_warning(exporter: Path):
    def misspell(document: dict[str, Any]) -> None:
        document["defaults"]["system"]["volums"] = document["defaults"]["system"].pop("volumes")
        document["colour"] = "blue"
        document["exporter_io"][0]["datatypes"] = ["number"]

    found = inspect_app(edit(exporter, misspell), check_secrets=False)
    assert found.problems == ["defaults.system.volums: unknown key (did you mean volumes?)"]
    assert "colour: not used (the vendor's format ignores it)" in found.warnings
    assert ("exporter_io[0].datatypes: not used (the vendor's format ignores it) (did you mean "
            "data_types?)") in found.warnings


def test_a_wrong_type_names_the_field_and_the_value(exporter: Path):
    def break_types(document: dict[str, Any]) -> None:
        document["exporter_io"][0]["data_types"] = "number"
        document["flags"]["enable_runtime_update"]["configuration"] = "maybe"
        document["defaults"]["system"]["privileged"] = "yes"
        document["defaults"]["system"]["ports"][0]["host"]["port"] = 70000

    assert problems_of(exporter, break_types) == [
        "flags.enable_runtime_update.configuration: must be true or false (got 'maybe')",
        "defaults.system.ports[0].host.port: must be at most 65535 (got 70000)",
        "defaults.system.privileged: must be true or false (got 'yes')",
        "exporter_io[0].data_types: must be a list (got 'number')",
    ]


def test_object_data_types_are_any_word(tmp_path: Path):
    def object_types(document: dict[str, Any]) -> None:
        document["data_streams"]["inputs"][0]["data_type"] = "camera-image"

    folder = edit(copy_app(tmp_path, "app"), object_types)
    manifest = load_manifest(folder)
    assert manifest.data_streams.inputs[0].data_type == "camera-image"
    assert manifest.data_streams.inputs[0].primitive_type == "object"
    exporter = edit(copy_app(tmp_path, "exporter"),
                    lambda d: d["exporter_io"][0].update(data_types=["dynacard", "number"]))
    assert load_manifest(exporter).subscriptions() == [
        Subscription("asset-data", None, ("number", "object"))]


def test_a_wrong_volume_type(exporter: Path):
    def add_volume(document: dict[str, Any]) -> None:
        document["defaults"]["system"]["volumes"].append(
            {"name": "logs", "target": "/logs", "type": "tmpfs"})

    assert problems_of(exporter, add_volume) == [
        "defaults.system.volumes[1].type: must be one of persistent, host, text (got 'tmpfs')"]


def test_volumes_and_ports_need_the_section_of_their_type(exporter: Path):
    def add(document: dict[str, Any]) -> None:
        system = document["defaults"]["system"]
        system["volumes"] += [{"name": "tty", "target": "/dev/tty", "type": "host"},
                              {"name": "cfg", "target": "/c", "type": "text",
                               "host": {"source": "/etc"}},
                              {"name": "rel", "target": "/r", "type": "host",
                               "host": {"source": "relative/path"}}]
        system["ports"].append({"name": "api", "type": "service", "port": 8080})

    problems = problems_of(exporter, add)
    assert problems == [
        "defaults.system.volumes[1].host: required for a host volume "
        "(host: {source: /path/on/host})",
        "defaults.system.volumes[2].host: not allowed for a text volume",
        "defaults.system.volumes[3].host.source: must be an absolute path on the host",
        "defaults.system.ports[2].port: unknown key (a host port takes host: {port: ...}, "
        "a service port service: {port: ...})",
    ]


def test_duplicate_names_are_errors(exporter: Path):
    def duplicate(document: dict[str, Any]) -> None:
        system = document["defaults"]["system"]
        system["volumes"].append({"name": "data", "target": "/other", "type": "persistent"})
        system["environment_vars"].append({"name": "AZURE_ACCOUNT_KEY", "value": "x"})
        system["ports"].append({"name": "web", "type": "host", "host": {"port": 80}})
        document["exporter_io"].append({"name": "default"})

    found = inspect_app(edit(exporter, duplicate), check_secrets=False)
    assert found.problems == [
        "defaults.system.environment_vars[3].name: duplicate environment variable "
        "'AZURE_ACCOUNT_KEY' (also environment_vars[1])",
        "defaults.system.volumes[1].name: duplicate volume name 'data' (also volumes[0])",
        "defaults.system.ports[2].host.port: duplicate port '80' (also ports[0])",
    ]


def test_a_repeated_io_name_is_a_warning(exporter: Path):
    manifest = load_manifest(edit(exporter, lambda d: d["exporter_io"].append({"name": "default"})))
    assert "exporter_io[1].name: duplicate name 'default' (also exporter_io[0])" \
        in manifest.warnings  # the vendor accepts it


def test_a_duplicate_volume_name_is_reported_beside_other_problems(exporter: Path):
    def break_volumes(document: dict[str, Any]) -> None:
        document["defaults"]["system"]["volumes"] += [
            {"name": "data", "target": "/a", "type": "persistent"},
            {"name": "x", "target": "/b", "type": "nfs"}]

    problems = problems_of(exporter, break_volumes)
    assert "defaults.system.volumes[1].name: duplicate volume name 'data' (also volumes[0])" \
        in problems
    assert "defaults.system.volumes[2].type: must be one of persistent, host, text (got 'nfs')" \
        in problems


def test_a_section_of_another_type(exporter: Path):
    def add_sections(document: dict[str, Any]) -> None:
        document["data_streams"] = {"inputs": [{"name": "t", "data_type": "number"}]}
        document["parameters"] = []

    manifest = load_manifest(edit(exporter, add_sections))
    assert manifest.warnings[:2] == [
        "data_streams: not used by type exporter (the vendor's format ignores it)",
        "parameters: not used by type exporter (the vendor's format ignores it)"]
    assert manifest.data_streams.inputs == []


def test_an_exporter_without_io_receives_nothing(exporter: Path):
    manifest = load_manifest(edit(exporter, lambda d: d.pop("exporter_io")))
    assert manifest.exporter_io == []
    assert "exporter_io: none: the exporter receives no data (add - name: default)" \
        in manifest.warnings


def test_info_fields(exporter: Path):
    def break_info(document: dict[str, Any]) -> None:
        document["name"] = "Azure_Uploader"
        document["version"] = 1.0
        document["description"] = "x" * 257
        del document["type"]

    assert problems_of(exporter, break_info) == [
        "type: required",
        "name: must be lowercase letters, digits and '-', starting and ending with a letter or "
        "digit (got 'Azure_Uploader')",
        "description: must be at most 256 characters",
        "version: must be a semantic version such as 1.0.0 (got '1.0')",
    ]


def test_a_name_longer_than_63_characters(exporter: Path):
    manifest = load_manifest(edit(exporter, lambda d: d.update(name="a" * 64)))
    assert "name: longer than 63 characters: a Kubernetes deployment refuses it" \
        in manifest.warnings


@pytest.mark.parametrize(("field", "value", "message"), [
    ("requests.cpu", "lots", "must be a CPU quantity such as 100m, 0.5 or 2 (got 'lots')"),
    ("requests.memory", "256m", "must be a memory quantity such as 256Mi, 1Gi or 500M "
                                "('256m' would mean millibytes: write 256Mi)"),
    ("limits.memory", "1GB", "must be a memory quantity such as 256Mi, 1Gi or 500M "
                             "(got '1GB')"),
    ("requests.cpu", "300m", "300m is more than the limit 200m"),
    ("requests.memory", "1Gi", "1Gi is more than the limit 512Mi"),
])
def test_resource_quantities(exporter: Path, field: str, value: str, message: str):
    kind, resource = field.split(".")
    problems = problems_of(exporter, lambda d: d["defaults"]["system"]["resources"][kind]
                           .update({resource: value}))
    assert problems == [f"defaults.system.resources.{field}: {message}"]


@pytest.mark.parametrize(("cpu", "memory"), [
    ("1", "1Gi"), (0.5, "500M"), (2, 268435456), ("150m", "128974848"), ("0.1", "1e9")])
def test_kubernetes_quantities_in_every_spelling(exporter: Path, cpu: Any, memory: Any):
    def set_limits(document: dict[str, Any]) -> None:
        document["defaults"]["system"]["resources"] = {"limits": {"cpu": cpu, "memory": memory}}

    assert problems_of(exporter, set_limits) == []


def test_invalid_yaml_gives_line_and_column(exporter: Path):
    (exporter / "app.yaml").write_text("name: demo\ntype: exporter\n  version: 1.0.0\n")
    assert check_app(exporter) == [
        "app.yaml line 3, column 10: mapping values are not allowed here"]
    with pytest.raises(ManifestError) as caught:
        load_manifest(exporter)
    assert caught.value.problems == check_app(exporter)


def test_a_key_given_twice_is_an_error(exporter: Path):
    (exporter / "app.yaml").write_text("name: a\ntype: app\nname: b\n")
    assert check_app(exporter) == ["app.yaml line 3, column 1: duplicate key 'name'"]


@pytest.mark.parametrize(("text", "problem"), [
    ("", "app.yaml: is empty (it needs spec_version, type, name and version)"),
    ("- a\n- b\n", "app.yaml: must be a mapping of keys (spec_version, type, name, ...), "
                   "not a list"),
])
def test_a_document_that_is_not_a_manifest(exporter: Path, text: str, problem: str):
    (exporter / "app.yaml").write_text(text)
    assert check_app(exporter) == [problem]


def test_a_folder_without_app_yaml(tmp_path: Path):
    assert check_app(tmp_path) == [f"{tmp_path} has no app.yaml: not found"]


def test_manifest_error_is_invalid_and_lists_every_problem(exporter: Path):
    edit(exporter, lambda d: d.update(name="Bad Name", version="one"))
    with pytest.raises(Invalid) as caught:
        load_manifest(exporter)
    assert isinstance(caught.value, ManifestError)
    assert len(caught.value.problems) == 2
    assert str(caught.value) == "\n".join(caught.value.problems)


# -- configuration and its JSON Schema -------------------------------------------------------
def test_defaults_that_break_the_configuration_schema(exporter: Path):
    def break_defaults(document: dict[str, Any]) -> None:
        document["defaults"]["configuration"] = {"upload_interval": -1}

    assert problems_of(exporter, break_defaults) == [
        "defaults.configuration.upload_interval: -1 is less than the minimum of 0"]


def test_a_configuration_given_at_run_time_replaces_the_defaults(exporter: Path):
    assert problems_of(exporter, configuration={"upload_interval": 30}) == []
    assert problems_of(exporter, configuration={}) == [
        "configuration: 'upload_interval' is a required property"]
    assert problems_of(exporter, configuration={"upload_interval": "soon"}) == [
        "configuration.upload_interval: 'soon' is not of type 'number'"]


def test_validate_configuration_on_the_manifest(exporter: Path):
    manifest = load_manifest(exporter)
    assert manifest.validate_configuration({"upload_interval": 5}) == []
    assert manifest.validate_configuration({"upload_interval": -5}) == [
        "configuration.upload_interval: -5 is less than the minimum of 0"]
    assert manifest.configuration_schema()["required"] == ["upload_interval"]


def test_ui_schema_files_must_exist_and_be_json_schemas(tmp_path: Path):
    importer = copy_app(tmp_path, "importer")
    (importer / "schemas" / "io_default.json").unlink()
    (importer / "schemas" / "configuration.json").write_text('{"type": "objekt"}')
    problems = problems_of(importer)
    assert problems[0].startswith("ui_schemas.configuration: schemas/configuration.json is "
                                  "not a valid JSON Schema (")
    assert problems[1:] == ["ui_schemas.io_configuration.default: file "
                            "schemas/io_default.json does not exist"]
    (importer / "schemas" / "configuration.json").write_text("{oops")
    assert problems_of(importer)[0] == ("ui_schemas.configuration: schemas/configuration.json "
                                        "is not valid JSON (line 1, column 2)")


# -- secrets -----------------------------------------------------------------------------------
def test_a_missing_secret_names_it_and_the_command_that_creates_it(exporter: Path,
                                                                    store: SecretStore):
    store.create("azure-account-name", "n")
    store.create("azure-storage-container", "c")
    assert check_app(exporter, secrets=store) == [
        "defaults.system.environment_vars[1].value: secret 'azure-account-key' does not exist: "
        "create it with lakeport secret create azure-account-key --value ..."]


def test_secrets_in_the_configuration_are_checked_too(tmp_path: Path, store: SecretStore):
    importer = copy_app(tmp_path, "importer")
    assert check_app(importer, secrets=store) == [
        "defaults.configuration.auth.password: secret 'mqtt-password' does not exist: "
        "create it with lakeport secret create mqtt-password --value ..."]
    configuration = {"host": "h", "port": 1, "auth": {"password": "<% secrets.Bad_Name %>"}}
    problems = check_app(importer, secrets=store, configuration=configuration)
    assert problems == ["configuration.auth.password: secret name 'Bad_Name' is not valid: use "
                        "lowercase letters, digits and '-', starting and ending with a letter "
                        "or digit"]


def test_unknown_key_wrong_volume_type_and_missing_secret_all_at_once(exporter: Path,
                                                                      store: SecretStore):
    def break_three_ways(document: dict[str, Any]) -> None:
        document["defaults"]["system"]["volumes"].append(
            {"name": "logs", "target": "/logs", "type": "tmpfs"})
        document["defaults"]["system"]["environment_vars"] = [
            {"name": "AZURE_KEY", "value": "<% secrets.azure-key %>"}]
        document["defaults"]["system"]["replicas"] = 2

    edit(exporter, break_three_ways)
    assert check_app(exporter, secrets=store) == [
        "defaults.system.volumes[1].type: must be one of persistent, host, text (got 'tmpfs')",
        "defaults.system.replicas: unknown key",
        "defaults.system.environment_vars[0].value: secret 'azure-key' does not exist: "
        "create it with lakeport secret create azure-key --value ...",
    ]


# -- what apps read ----------------------------------------------------------------------------
def test_subscriptions_accept_only_what_the_app_declared(tmp_path: Path):
    app = load_manifest(copy_app(tmp_path, "app"))
    data, control = app.subscriptions()
    assert data.accepts(Number(asset="m1", datastream="motor_temperature", value=80))
    assert not data.accepts(Number(asset="m1", datastream="motor_speed", value=80))
    assert not data.accepts(ControlChange(asset="m1", datastream="motor_temperature", value=1))
    assert control.accepts(ControlChange(asset="m1", datastream="motor_mode", value="eco"))

    exporter = Subscription("asset-data", None, ("number", "string"))
    assert exporter.accepts(String(asset="m1", datastream="anything", value="on"))
    assert not exporter.accepts(Boolean(asset="m1", datastream="anything", value=True))
    importer = Subscription("control-changes", None, ("boolean",))
    assert importer.accepts(ControlChange(asset="m1", datastream="valve", value=False))
    assert not importer.accepts(ControlChange(asset="m1", datastream="valve", value=2.5))
    assert not importer.accepts(DataTag(asset="m1", tag_name="t", start="2026-01-01T00:00:00Z",
                                        end="2026-01-01T01:00:00Z"))


def test_subscription_topics_follow_the_topic_prefix(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LAKEPORT_TOPIC_PREFIX", "plant-a.")
    exporter = load_manifest(copy_app(tmp_path, "exporter"))
    subscription = exporter.subscriptions()[0]
    assert subscription.topic == "plant-a.asset-data"
    assert subscription.accepts(Number(asset="m1", datastream="t", value=1))


# -- the resolved manifest and the JSON Schema -------------------------------------------------
def test_resolved_fills_defaults_and_masks_secrets(tmp_path: Path):
    importer = load_manifest(copy_app(tmp_path, "importer"))
    resolved = importer.resolved({"host": "broker", "port": 1883,
                                  "auth": {"password": "<% secrets.other %>"}})
    assert resolved["defaults"]["configuration"]["auth"]["password"] == "***"
    assert resolved["flags"]["enable_runtime_update"]["configuration"] is False
    assert resolved["importer_io"][1]["control"] is False
    assert "exporter_io" not in resolved and "data_streams" not in resolved
    assert importer.resolved()["defaults"]["configuration"]["auth"]["password"] == "***"
    assert Manifest.model_validate(importer.resolved()).name == "mqtt-importer"


def test_the_json_schema_checks_what_the_model_checks():
    schema = manifest_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for kind in ("exporter", "importer", "app", "docker"):
        document = yaml.safe_load((FIXTURES / kind / "app.yaml").read_text())
        assert list(validator.iter_errors(document)) == [], kind
    exporter = yaml.safe_load((FIXTURES / "exporter" / "app.yaml").read_text())
    assert validator.is_valid({**exporter, "colour": "blue"})  # a warning, not an error
    system = exporter["defaults"]["system"]
    assert not validator.is_valid({**exporter, "defaults": {"system": {**system, "x": 1}}})
    assert not validator.is_valid({**exporter, "version": "1.0"})
    assert json.loads(json.dumps(schema)) == schema


def test_the_json_schema_describes_every_key():
    undescribed = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in (node.get("properties") or {}).items():
                if "description" not in value:
                    undescribed.append(f"{where}.{key}")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(manifest_json_schema(), "")
    assert undescribed == []
