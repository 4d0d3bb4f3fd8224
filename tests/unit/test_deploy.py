"""Deployment files from defaults.system: valid YAML that carries every setting."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from lakeport.apps.deploy import (
    DeployOptions,
    compose_file,
    kubernetes_objects,
    render_deployment,
)
from lakeport.apps.manifest import Manifest, load_manifest
from lakeport.errors import Invalid

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "apps"


def manifest_of(tmp_path: Path, kind: str, change: Any = None) -> Manifest:
    folder = Path(shutil.copytree(FIXTURES / kind, tmp_path / kind))
    if change is not None:
        file = folder / "app.yaml"
        document = yaml.safe_load(file.read_text())
        change(document)
        file.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_manifest(folder)


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


def kubernetes(manifest: Manifest, **options: Any) -> list[dict[str, Any]]:
    text = render_deployment(manifest, "kubernetes", DeployOptions(**options))
    documents = list(yaml.safe_load_all(text))
    assert documents == kubernetes_objects(manifest, DeployOptions(**options))
    return documents


def compose(manifest: Manifest, **options: Any) -> dict[str, Any]:
    text = render_deployment(manifest, "compose", DeployOptions(**options))
    document = yaml.safe_load(text)
    assert document == compose_file(manifest, DeployOptions(**options))
    return document


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
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
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
    env = kubernetes(exporter)[0]["spec"]["template"]["spec"]["containers"][0]["env"]
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
    assert mounts["data"]["mountPath"] == "/app/data.db"  # relative: under the workdir
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == \
        "azure-data-lake-uploader-data"
    assert volumes["serial"] == {"name": "serial", "hostPath": {"path": "/dev/ttyS0"}}
    assert mounts["serial"]["mountPath"] == "/dev/rs232"
    assert mounts["settings"] == {"name": "settings", "mountPath": "/app/conf/settings.ini",
                                  "subPath": "settings.ini", "readOnly": True}
    settings, blob = documents[4], documents[5]
    assert settings["data"] == {"settings.ini": "[a]\nb = 1\n"}
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
        kubernetes_objects(manifest)
    assert compose_file(manifest)["services"][manifest.name]["ports"][1]["published"] == "8080"


def test_kubernetes_options(exporter: Manifest):
    configuration = {"upload_interval": 5, "password": "<% secrets.db-pw %>"}
    documents = kubernetes(exporter, image="registry.local/uploader:dev",
                           configuration=configuration, streams_url="nats://nats:4222",
                           workdir="/opt/app")
    container = documents[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert container["image"] == "registry.local/uploader:dev"
    assert env["LAKEPORT_STREAMS"]["value"] == "nats://nats:4222"
    assert env["LAKEPORT_APP_CONFIGURATION"]["value"] == (
        '{"upload_interval": 5, "password": "$(LAKEPORT_SECRET_DB_PW)"}')
    assert container["volumeMounts"][0]["mountPath"] == "/opt/app/data.db"


def test_a_minimal_app_gives_just_a_deployment(tmp_path: Path):
    documents = kubernetes(manifest_of(tmp_path, "app"))
    assert [d["kind"] for d in documents] == ["Deployment"]
    container = documents[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "LOG_LEVEL", "value": "INFO"},
                                {"name": "WORKERS", "value": "4"}]
    assert "securityContext" not in container and "resources" not in container


# -- docker compose ----------------------------------------------------------------------------
def test_compose_service(exporter: Manifest):
    document = compose(exporter)
    service = document["services"]["azure-data-lake-uploader"]
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
        {"type": "volume", "source": "data", "target": "/app/data.db"},
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
    service = compose_file(manifest)["services"][manifest.name]
    assert service["deploy"]["resources"] == {"limits": {"cpus": cpus, "memory": compose_memory}}


def test_the_header_says_how_to_provide_the_secrets(exporter: Manifest):
    text = render_deployment(exporter, "kubernetes")
    assert "kubectl create secret generic azure-account-key --from-literal=value=..." in text
    assert "export LAKEPORT_SECRET_DB_PW=..." in render_deployment(exporter, "compose")


def test_an_unknown_format(exporter: Manifest):
    with pytest.raises(Invalid, match="unknown deploy format 'helm'"):
        render_deployment(exporter, "helm")
