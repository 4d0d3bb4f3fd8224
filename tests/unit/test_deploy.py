"""Deployment files from defaults.system: valid YAML that carries every setting."""

from __future__ import annotations

import base64
import datetime
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeport.apps.deploy import Deployment, DeployOptions, render_deployment
from lakeport.apps.manifest import Manifest, load_manifest
from lakeport.apps.runner import app_environment
from lakeport.apps.secrets import SecretStore
from lakeport.errors import Invalid

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apps"
# the vendor template's Dockerfile, as its export sample ships it
VENDOR_DOCKERFILE = (FIXTURES.parent / "seed_export_app" / "Dockerfile").read_text()


def manifest_of(tmp_path: Path, kind: str, change: Any = None,
                dockerfile: str | None = None) -> Manifest:
    folder = Path(shutil.copytree(FIXTURES / kind, tmp_path / kind))
    if change is not None:
        file = folder / "app.yaml"
        document = yaml.safe_load(file.read_text())
        change(document)
        file.write_text(yaml.safe_dump(document, sort_keys=False))
    if dockerfile is not None:
        (folder / "Dockerfile").write_text(dockerfile)
    return load_manifest(folder)


def with_volumes(*volumes: dict[str, Any]) -> Any:
    def change(document: dict[str, Any]) -> None:
        document["defaults"]["system"]["volumes"] = list(volumes)
    return change


@pytest.fixture
def exporter(tmp_path: Path) -> Manifest:
    def extend(document: dict[str, Any]) -> None:
        system = document["defaults"]["system"]
        system["environment_vars"] += [
            {"name": "CONNECTION", "value": "user=<% secrets.db-user %>;pw=$(<% secrets.db-pw %>)"},
            {"name": "PRICE", "value": "$5"},
        ]
        system["volumes"] += [
            {"name": "serial", "target": "/dev/rs232", "type": "host",
             "host": {"source": "/dev/ttyS0"}},
            {"name": "settings", "target": "conf/settings.ini", "type": "text",
             "text": {"data": "[a]\nb = 1\n"}},
            {"name": "blob", "target": "/etc/blob.bin", "type": "text",
             "text": {"data": base64.b64encode(b"hello").decode(), "base64": True}},
        ]
        system["ports"].append({"name": "metrics", "type": "service",
                                "service": {"port": 9100}})

    return manifest_of(tmp_path, "exporter", extend)


def render(manifest: Manifest, fmt: str, **options: Any) -> Deployment:
    """The deployment, checked to be the YAML of its documents."""
    deployment = render_deployment(manifest, fmt, DeployOptions(**options))
    assert list(yaml.safe_load_all(deployment.text)) == deployment.documents
    return deployment


def kubernetes(manifest: Manifest, **options: Any) -> list[dict[str, Any]]:
    return render(manifest, "kubernetes", **options).documents


def compose(manifest: Manifest, **options: Any) -> dict[str, Any]:
    (document,) = render(manifest, "compose", **options).documents
    return document


def container_of(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = documents[0]["spec"]["template"]["spec"]["containers"]
    return container


# -- Kubernetes --------------------------------------------------------------------------------
def test_kubernetes_deployment(exporter: Manifest):
    documents = kubernetes(exporter)
    kinds = [(d["kind"], d["metadata"]["name"]) for d in documents]
    assert kinds == [
        ("Deployment", "azure-data-lake-uploader"),
        ("Service", "azure-data-lake-uploader"),
        ("Service", "azure-data-lake-uploader-exposed"),
        ("PersistentVolumeClaim", "azure-data-lake-uploader-data"),
        ("ConfigMap", "azure-data-lake-uploader-settings"),
        ("ConfigMap", "azure-data-lake-uploader-blob"),
    ]
    deployment = documents[0]
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    container = container_of(documents)
    assert container["image"] == "azure-data-lake-uploader:1.0.0"
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                      "limits": {"cpu": "200m", "memory": "512Mi"}}
    assert container["securityContext"] == {"privileged": True}
    assert container["ports"] == [
        {"name": "http", "containerPort": 80, "protocol": "TCP", "hostPort": 80},
        {"name": "opcua", "containerPort": 48010, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"},
    ]


def test_kubernetes_secrets_are_secret_key_refs(exporter: Manifest):
    env = container_of(kubernetes(exporter))["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["AZURE_ACCOUNT_KEY"] == {"name": "AZURE_ACCOUNT_KEY", "valueFrom": {
        "secretKeyRef": {"name": "azure-account-key", "key": "value"}}}
    # A value mixing text and secrets reads them from variables defined before it.
    assert by_name["CONNECTION"]["value"] == (
        "user=$(LAKEPORT_SECRET_DB_USER);pw=$$($(LAKEPORT_SECRET_DB_PW))")
    names = [e["name"] for e in env]
    assert names.index("LAKEPORT_SECRET_DB_USER") < names.index("CONNECTION")
    assert by_name["LAKEPORT_SECRET_DB_PW"]["valueFrom"]["secretKeyRef"]["name"] == "db-pw"
    assert by_name["PRICE"]["value"] == "$$5"


def test_kubernetes_volumes_and_their_objects(exporter: Manifest):
    documents = kubernetes(exporter)
    pod = documents[0]["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["data"]["mountPath"] == "/app"  # data.db is a file: its folder is mounted
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == \
        "azure-data-lake-uploader-data"
    assert volumes["serial"] == {"name": "serial", "hostPath": {"path": "/dev/ttyS0"}}
    assert mounts["serial"]["mountPath"] == "/dev/rs232"
    assert mounts["settings"] == {"name": "settings", "mountPath": "/app/conf/settings.ini",
                                  "subPath": "settings.ini", "readOnly": True}
    settings_map, blob = documents[4], documents[5]
    assert settings_map["data"] == {"settings.ini": "[a]\nb = 1\n"}
    assert base64.b64decode(blob["binaryData"]["blob.bin"]) == b"hello"
    assert documents[3]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_kubernetes_services(exporter: Manifest):
    inside, outside = kubernetes(exporter)[1:3]
    assert inside["spec"]["type"] == "ClusterIP"
    assert [p["name"] for p in inside["spec"]["ports"]] == ["opcua", "metrics"]
    assert outside["spec"]["type"] == "NodePort"
    assert outside["spec"]["ports"] == [{"name": "opcua", "port": 48010, "targetPort": "opcua",
                                        "protocol": "TCP", "nodePort": 30120}]


def test_a_node_port_outside_the_kubernetes_range(tmp_path: Path):
    def expose_low(document: dict[str, Any]) -> None:
        document["defaults"]["system"]["ports"][1]["service"]["exposed_port"] = 8080

    manifest = manifest_of(tmp_path, "exporter", expose_low)
    with pytest.raises(Invalid, match=r"ports\[1\].service.exposed_port: 8080 is outside"):
        render_deployment(manifest, "kubernetes")
    assert compose(manifest)["services"][manifest.name]["ports"][1]["published"] == "8080"


def test_kubernetes_options(exporter: Manifest):
    configuration = {"upload_interval": 5, "password": "<% secrets.db-pw %>"}
    container = container_of(kubernetes(
        exporter, image="registry.local/uploader:dev", configuration=configuration,
        streams_url="nats://nats:4222", workdir="/opt/app"))
    env = {e["name"]: e for e in container["env"]}
    assert container["image"] == "registry.local/uploader:dev"
    assert env["LAKEPORT_STREAMS"]["value"] == "nats://nats:4222"
    # The JSON is passed as it is; the secret it names is passed beside it.
    assert json.loads(env["LAKEPORT_APP_CONFIGURATION"]["value"]) == configuration
    assert env["LAKEPORT_SECRET_DB_PW"]["valueFrom"]["secretKeyRef"]["name"] == "db-pw"
    assert container["volumeMounts"][0]["mountPath"] == "/opt/app"


def test_a_minimal_app_gives_just_a_deployment(tmp_path: Path):
    documents = kubernetes(manifest_of(tmp_path, "app"))
    assert [d["kind"] for d in documents] == ["Deployment"]
    container = container_of(documents)
    assert container["env"] == [
        {"name": "LOG_LEVEL", "value": "INFO"}, {"name": "WORKERS", "value": "4"},
        {"name": "LAKEPORT_APP_CONFIGURATION",
         "value": '{"temperature_threshold_tolerance": 5}'}]
    assert "securityContext" not in container and "resources" not in container


# -- docker compose ----------------------------------------------------------------------------
def test_compose_service(exporter: Manifest):
    service = compose(exporter)["services"]["azure-data-lake-uploader"]
    assert service["image"] == "azure-data-lake-uploader:1.0.0"
    assert service["privileged"] is True
    assert service["deploy"]["resources"] == {
        "reservations": {"cpus": "0.1", "memory": "256m"},
        "limits": {"cpus": "0.2", "memory": "512m"}}
    assert service["ports"] == [
        {"name": "http", "target": 80, "published": "80"},
        {"name": "opcua", "target": 48010, "published": "30120"}]
    assert service["expose"] == ["9100"]


def test_compose_secrets_come_from_the_environment(exporter: Manifest):
    env = compose(exporter)["services"]["azure-data-lake-uploader"]["environment"]
    assert env["AZURE_ACCOUNT_KEY"].startswith("${LAKEPORT_SECRET_AZURE_ACCOUNT_KEY:?")
    assert env["CONNECTION"].startswith("user=${LAKEPORT_SECRET_DB_USER:?")
    assert env["PRICE"] == "$$5"


def test_compose_volumes_and_configs(exporter: Manifest):
    document = compose(exporter)
    service = document["services"]["azure-data-lake-uploader"]
    assert service["volumes"] == [
        {"type": "volume", "source": "data", "target": "/app"},
        {"type": "bind", "source": "/dev/ttyS0", "target": "/dev/rs232"}]
    assert service["configs"] == [
        {"source": "settings", "target": "/app/conf/settings.ini"},
        {"source": "blob", "target": "/etc/blob.bin"}]
    assert document["volumes"] == {"data": {}}
    assert document["configs"] == {"settings": {"content": "[a]\nb = 1\n"},
                                   "blob": {"content": "hello"}}


@pytest.mark.parametrize(("cpu", "memory", "cpus", "compose_memory"), [
    ("1", "1Gi", "1", "1g"), ("1500m", "500M", "1.5", "500000000b"), ("0.25", "64Ki", "0.25",
                                                                       "64k")])
def test_compose_resource_units(tmp_path: Path, cpu: str, memory: str, cpus: str,
                                compose_memory: str):
    def limit(document: dict[str, Any]) -> None:
        document["defaults"]["system"]["resources"] = {"limits": {"cpu": cpu, "memory": memory}}

    manifest = manifest_of(tmp_path, "exporter", limit)
    service = compose(manifest)["services"][manifest.name]
    assert service["deploy"]["resources"] == {"limits": {"cpus": cpus, "memory": compose_memory}}


def test_the_header_says_how_to_provide_the_secrets(exporter: Manifest):
    text = render_deployment(exporter, "kubernetes").text
    assert "kubectl create secret generic azure-account-key --from-literal=value=..." in text
    assert "export LAKEPORT_SECRET_DB_PW=..." in render_deployment(exporter, "compose").text


def test_an_unknown_format(exporter: Manifest):
    with pytest.raises(Invalid, match="unknown deploy format 'helm'"):
        render_deployment(exporter, "helm")


# -- the working folder ------------------------------------------------------------------------
def data_mount(manifest: Manifest, **options: Any) -> tuple[str, str]:
    """Where the ``data`` volume is mounted, in Kubernetes and in compose."""
    mounts = container_of(kubernetes(manifest, **options))["volumeMounts"]
    volumes = compose(manifest, **options)["services"][manifest.name]["volumes"]
    return mounts[0]["mountPath"], volumes[0]["target"]


def test_the_working_folder_is_the_vendor_dockerfiles_workdir(tmp_path: Path):
    manifest = manifest_of(tmp_path, "exporter", with_volumes(
        {"name": "data", "target": "state/", "type": "persistent"}),
        dockerfile=VENDOR_DOCKERFILE)
    assert data_mount(manifest) == ("/opt/kelvin/app/state", "/opt/kelvin/app/state")
    text = render_deployment(manifest, "compose").text
    assert f"/opt/kelvin/app (the last WORKDIR of {manifest.folder / 'Dockerfile'})" in text


@pytest.mark.parametrize(("dockerfile", "workdir"), [
    ("FROM python:3.12\nCOPY . .\n", "/app"),  # no WORKDIR
    ("# a comment\nfrom python:3.12\nworkdir /srv/app\n", "/srv/app"),  # any case
    ("FROM python:3.12\nWORKDIR /srv\nWORKDIR app\nWORKDIR ../other/./app\n", "/srv/other/app"),
    ("FROM python:3.12\nWORKDIR \\\n    # comments inside a continued line are dropped\n"
     "    /srv/app\nENTRYPOINT [\"python\", \"main.py\"]\n", "/srv/app"),
    ("ARG ROOT=/srv\nFROM python:3.12\nARG ROOT\nENV APP_HOME=$ROOT/app\n"
     "WORKDIR ${APP_HOME}/current\n", "/srv/app/current"),
    ("FROM python:3.12\nARG SUB=tool\nENV SUB=env\nARG SUB=arg\nWORKDIR /opt/$SUB\n",
     "/opt/env"),  # ENV wins over ARG
    ("FROM python:3.12\nWORKDIR ${UNSET:-/fallback}/a\nWORKDIR \"with space\"\n",
     "/fallback/a/with space"),
    ("FROM python:3.12\nWORKDIR '/$literal'\n", "/$literal"),
    ("FROM python:3.12 AS build\nWORKDIR /build\nFROM build\nWORKDIR out\n", "/build/out"),
    ("FROM python:3.12 AS build\nWORKDIR /build\nFROM python:3.12-slim\n"
     "COPY --from=build /build /x\n", "/app"),  # the final stage has none
    ("# escape=`\nFROM python:3.12\nWORKDIR C:\\`$ `\napp\n", "/C:\\$ app"),
])
def test_the_working_folder_from_any_dockerfile(tmp_path: Path, dockerfile: str, workdir: str):
    manifest = manifest_of(tmp_path, "exporter", with_volumes(
        {"name": "data", "target": "data", "type": "persistent"}), dockerfile=dockerfile)
    assert data_mount(manifest) == (f"{workdir.rstrip('/')}/data",) * 2


def test_the_working_folder_without_a_dockerfile_is_app(tmp_path: Path):
    manifest = manifest_of(tmp_path, "exporter", with_volumes(
        {"name": "data", "target": "data", "type": "persistent"}))
    assert data_mount(manifest) == ("/app/data", "/app/data")
    assert "/app (the default: there is no /" in render_deployment(manifest, "compose").text


def test_an_explicit_working_folder_wins_over_the_dockerfile(tmp_path: Path):
    manifest = manifest_of(tmp_path, "exporter", with_volumes(
        {"name": "data", "target": "data", "type": "persistent"}),
        dockerfile="FROM python:3.12\nARG HOME_DIR\nWORKDIR $HOME_DIR\n")
    assert data_mount(manifest, workdir="/srv") == ("/srv/data", "/srv/data")


@pytest.mark.parametrize(("dockerfile", "problem"), [
    ("FROM python:3.12\nARG HOME_DIR\nWORKDIR $HOME_DIR/app\n",
     r"Dockerfile line 3: \$HOME_DIR has no value in the Dockerfile"),
    ("FROM python:3.12\nWORKDIR ${HOME_DIR%/}\n",
     r"Dockerfile line 2: \$\{HOME_DIR%/\} is a substitution lakeport does not read"),
    ("FROM python:3.12\nRUN <<EOF\necho\n", r"Dockerfile: not a valid Dockerfile"),
])
def test_a_working_folder_the_dockerfile_does_not_tell(tmp_path: Path, dockerfile: str,
                                                      problem: str):
    manifest = manifest_of(tmp_path, "exporter", dockerfile=dockerfile)
    with pytest.raises(Invalid, match=problem):
        render_deployment(manifest, "kubernetes")


# -- persistent volumes whose target is a file ---------------------------------------------------
def test_a_persistent_file_target_mounts_its_folder_with_a_warning(tmp_path: Path):
    manifest = manifest_of(tmp_path, "exporter", dockerfile=VENDOR_DOCKERFILE)  # data.db
    for fmt in ("compose", "kubernetes"):
        deployment = render(manifest, fmt)
        (warning,) = deployment.warnings
        assert warning.startswith("volume 'data': its target data.db looks like a file, so its "
                                  "folder /opt/kelvin/app is mounted")
        assert "hides what the image has in /opt/kelvin/app" in warning
    assert data_mount(manifest) == ("/opt/kelvin/app", "/opt/kelvin/app")


def test_which_persistent_targets_are_files(tmp_path: Path):
    manifest = manifest_of(tmp_path, "exporter", with_volumes(
        {"name": "db", "target": "/var/lib/app/store.sqlite", "type": "persistent"},
        {"name": "plain", "target": "/data", "type": "persistent"},
        {"name": "hidden", "target": ".cache", "type": "persistent"},
        {"name": "dotted", "target": "/srv/store.d/", "type": "persistent"},
        {"name": "config", "target": "/etc/app.ini", "type": "text", "text": {"data": "a"}}))
    deployment = render(manifest, "kubernetes")
    mounts = {m["name"]: m["mountPath"] for m in container_of(deployment.documents)["volumeMounts"]}
    assert mounts == {"db": "/var/lib/app", "plain": "/data", "hidden": "/app/.cache",
                      "dotted": "/srv/store.d", "config": "/etc/app.ini"}
    assert deployment.warnings == [
        "volume 'db': its target /var/lib/app/store.sqlite looks like a file, so its folder "
        "/var/lib/app is mounted (end the target with / if it is a folder)"]


def test_a_persistent_file_at_the_root_is_refused(tmp_path: Path):
    manifest = manifest_of(tmp_path, "exporter", with_volumes(
        {"name": "data", "target": "/data.db", "type": "persistent"}))
    with pytest.raises(Invalid, match=r"'data': its target /data\.db looks like a file in /"):
        render_deployment(manifest, "kubernetes")


def test_two_volumes_in_one_folder_are_refused(tmp_path: Path):
    manifest = manifest_of(tmp_path, "exporter", with_volumes(
        {"name": "data", "target": "/srv/data.db", "type": "persistent"},
        {"name": "logs", "target": "/srv/", "type": "persistent"}))
    with pytest.raises(Invalid, match="'data' and 'logs' are both mounted at /srv"):
        render_deployment(manifest, "compose")


# -- the configuration ---------------------------------------------------------------------------
def test_defaults_configuration_is_passed_as_run_passes_it(tmp_path: Path):
    manifest = manifest_of(tmp_path, "exporter")
    (tmp_path / "secrets.json").write_text(json.dumps(dict.fromkeys(manifest.secret_refs(), "s")))
    expected = app_environment(manifest, manifest.defaults.configuration, "memory://",
                               SecretStore(tmp_path))["LAKEPORT_APP_CONFIGURATION"]
    assert expected == '{"upload_interval": 60}'
    env = {e["name"]: e for e in container_of(kubernetes(manifest))["env"]}
    assert env["LAKEPORT_APP_CONFIGURATION"]["value"] == expected
    service = compose(manifest)["services"][manifest.name]
    assert service["environment"]["LAKEPORT_APP_CONFIGURATION"] == expected


def test_a_configuration_that_is_not_json_is_refused(exporter: Manifest):
    with pytest.raises(Invalid, match="configuration: cannot be passed to the app as JSON"):
        render_deployment(exporter, "compose",
                          DeployOptions(configuration={"since": datetime.date(2024, 1, 1)}))


def compose_interpolated(value: str, environment: dict[str, str]) -> str:
    """What ``docker compose`` makes of a value: ``$$`` → ``$``, ``${NAME:?message}`` → the
    variable (which must be set)."""
    pattern = r"\$(?:(?P<dollar>\$)|\{(?P<name>[A-Za-z_]\w*)(?::\?[^}]*)?\})"

    def replace(match: re.Match[str]) -> str:
        return "$" if match["dollar"] else environment[match["name"]]

    resolved = re.sub(pattern, replace, value)
    assert value.count("$") == sum(len(m.group()) - len(m.group().lstrip("$"))
                                   for m in re.finditer(pattern, value)), value
    return resolved


def kubernetes_expanded(value: str, defined: dict[str, str]) -> str:
    """What Kubernetes makes of an env value: ``$$`` → ``$``, ``$(NAME)`` → an earlier
    variable, anything else as it is."""
    return re.sub(r"\$(\$|\((\w+)\))", lambda m: "$" if m[1] == "$" else
                  defined.get(m[2], m.group()), value)


def container_environment(deployment: Deployment, fmt: str, name: str,
                          secrets: dict[str, str]) -> dict[str, str]:
    """The environment the app's process gets from ``deployment``, given the secrets."""
    if fmt == "compose":
        shell = {f"LAKEPORT_SECRET_{n.upper().replace('-', '_')}": v for n, v in secrets.items()}
        declared = deployment.documents[0]["services"][name]["environment"]
        return {key: compose_interpolated(value, shell) for key, value in declared.items()}
    env: dict[str, str] = {}
    for entry in container_of(deployment.documents)["env"]:
        if "valueFrom" in entry:
            env[entry["name"]] = secrets[entry["valueFrom"]["secretKeyRef"]["name"]]
        else:
            env[entry["name"]] = kubernetes_expanded(entry["value"], env)
    return env


TRICKY = st.sampled_from([
    "$", "$$", "${HOME}", "${A:-b}", "$(HOME)", "$$(X)", "$HOME", "<% secrets.db-pw %>",
    "<% secrets.db-user%>", "'", '"', "\\", "\n", "\r\n", "\t", "yes", "no", "null", "~", "true",
    "0x1F", "1e3", "0o17", "- a", ": b", "# c", "&anchor", "*alias", "!tag", "%YAML", "---",
    "é", "日本", "🙂", "\u2028", "\x85", "\x00", "}", "{",
])
TEXT = st.lists(st.one_of(TRICKY, st.text()), max_size=4).map("".join)
SECRET_VALUE = st.lists(st.one_of(TRICKY.filter(lambda piece: piece != "\x00"),
                                  st.text(st.characters(exclude_characters="\x00"), min_size=1)),
                        min_size=1, max_size=4).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=12)
SECRET_NAMES = ("azure-account-name", "azure-account-key", "azure-storage-container",
                "db-user", "db-pw")


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(configuration=st.dictionaries(TEXT, JSON_VALUES, max_size=5),
       secret_values=st.lists(SECRET_VALUE, min_size=len(SECRET_NAMES),
                              max_size=len(SECRET_NAMES)))
def test_the_app_gets_exactly_what_run_gives_it(exporter: Manifest, tmp_path: Path,
                                               configuration: dict[str, Any],
                                               secret_values: list[str]):
    secrets = dict(zip(SECRET_NAMES, secret_values, strict=True))
    (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    run_env = app_environment(exporter, configuration, "memory://", SecretStore(tmp_path),
                              base={})
    expected = {name: run_env[name] for name in
                [v.name for v in exporter.environment_vars] + ["LAKEPORT_APP_CONFIGURATION"]}
    for fmt in ("compose", "kubernetes"):
        deployment = render(exporter, fmt, configuration=configuration)
        env = container_environment(deployment, fmt, exporter.name, secrets)
        assert {name: env[name] for name in expected} == expected
        assert json.loads(env["LAKEPORT_APP_CONFIGURATION"]) == configuration
        if "<% secrets.db-pw %>" in expected["LAKEPORT_APP_CONFIGURATION"]:
            assert env["LAKEPORT_SECRET_DB_PW"] == secrets["db-pw"]
