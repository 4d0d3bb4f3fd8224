"""Deployment files from an app's ``defaults.system``: docker compose or Kubernetes.

Secrets are referenced, never written: Kubernetes reads each from a Secret of the same name
(key ``value``) through ``secretKeyRef``; compose reads ``LAKEPORT_SECRET_<NAME>`` from the
environment of ``docker compose up``. Relative volume targets are placed under the image's
working folder (``/app`` in the Dockerfile ``lakeport app create`` writes).
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import yaml

from lakeport.apps.manifest import Manifest
from lakeport.apps.manifest_models import Volume, parse_quantity
from lakeport.apps.secrets import SECRET_REF
from lakeport.errors import Invalid

DeployFormat = Literal["compose", "kubernetes"]
FORMATS: tuple[str, ...] = ("compose", "kubernetes")
SECRET_KEY = "value"
NODE_PORTS = range(30000, 32768)
STORAGE_REQUEST = "1Gi"


@dataclass(frozen=True)
class DeployOptions:
    """What a deployment adds to the manifest.

    ``image`` defaults to ``<name>:<version>``; ``configuration`` (when given) is passed as
    ``LAKEPORT_APP_CONFIGURATION``; ``streams_url`` as ``LAKEPORT_STREAMS``; relative volume
    targets are placed under ``workdir``.
    """

    image: str | None = None
    configuration: dict[str, Any] | None = None
    streams_url: str | None = None
    workdir: str = "/app"


class _Dumper(yaml.SafeDumper):
    """Writes repeated values out in full (no ``&id001`` anchors) on long lines."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                         width=1 << 16)


def render_deployment(manifest: Manifest, fmt: str,
                      options: DeployOptions | None = None) -> str:
    """The YAML text of a compose file or of Kubernetes objects for ``manifest``."""
    options = options or DeployOptions()
    if fmt == "compose":
        return _header(manifest, fmt, options) + _dump([compose_file(manifest, options)])
    if fmt == "kubernetes":
        return _header(manifest, fmt, options) + _dump(kubernetes_objects(manifest, options))
    raise Invalid(f"unknown deploy format '{fmt}': use one of {', '.join(FORMATS)}")


def _header(manifest: Manifest, fmt: str, options: DeployOptions) -> str:
    lines = [f"{manifest.name} {manifest.version} ({manifest.type}): written by "
             f"lakeport app deploy --format {fmt} from {manifest.folder / 'app.yaml'}"]
    secrets = _secrets_used(manifest, options)
    if secrets and fmt == "kubernetes":
        lines.append("Secrets are referenced, not included. Create them first:")
        lines += [f"  kubectl create secret generic {name} --from-literal={SECRET_KEY}=..."
                  for name in secrets]
    elif secrets:
        lines.append("Secrets are referenced, not included. Set them before "
                     "docker compose up:")
        lines += [f"  export {secret_variable(name)}=..." for name in secrets]
    if options.streams_url is None:
        lines.append("LAKEPORT_STREAMS is not set: the app keeps its topics inside its "
                     "container (use --streams nats://... to share them).")
    return "".join(f"# {line}\n" for line in lines)


def secret_variable(name: str) -> str:
    """The variable carrying secret ``name``: ``azure-key`` → ``LAKEPORT_SECRET_AZURE_KEY``."""
    return "LAKEPORT_SECRET_" + name.upper().replace("-", "_")


# -- environment ------------------------------------------------------------------------------
def _parts(text: str) -> list[tuple[bool, str]]:
    """``text`` cut into ``(is_secret, literal text or secret name)`` pieces."""
    pieces = SECRET_REF.split(text)
    return [(index % 2 == 1, piece) for index, piece in enumerate(pieces)
            if piece or index % 2 == 1]


def _environment(manifest: Manifest, options: DeployOptions) -> list[tuple[str, str]]:
    env = [(variable.name, variable.value) for variable in manifest.environment_vars]
    if options.configuration is not None:
        env.append(("LAKEPORT_APP_CONFIGURATION", json.dumps(options.configuration)))
    if options.streams_url is not None:
        env.append(("LAKEPORT_STREAMS", options.streams_url))
    return env


def _secrets_used(manifest: Manifest, options: DeployOptions) -> list[str]:
    names = [piece for _, value in _environment(manifest, options)
             for is_secret, piece in _parts(value) if is_secret]
    return list(dict.fromkeys(names))


def _escape(text: str) -> str:
    """Compose and Kubernetes both read ``$$`` as a literal ``$``."""
    return text.replace("$", "$$")


def _target(volume: Volume, workdir: str) -> str:
    return posixpath.normpath(posixpath.join(workdir, volume.target))


# -- docker compose ---------------------------------------------------------------------------
def compose_file(manifest: Manifest, options: DeployOptions | None = None) -> dict[str, Any]:
    """A compose file (``services``, ``volumes``, ``configs``) running the app."""
    options = options or DeployOptions()
    service: dict[str, Any] = {
        "image": options.image or f"{manifest.name}:{manifest.version}",
        "restart": "unless-stopped",
        "stop_grace_period": "30s",
    }
    environment = {
        name: "".join(f"${{{secret_variable(p)}:?set {secret_variable(p)} to secret {p}}}"
                      if is_secret else _escape(p) for is_secret, p in _parts(value))
        for name, value in _environment(manifest, options)}
    if environment:
        service["environment"] = environment
    document: dict[str, Any] = {"services": {manifest.name: service}}
    _compose_volumes(manifest, options, service, document)
    _compose_ports(manifest, service)
    resources = _compose_resources(manifest)
    if resources:
        service["deploy"] = {"resources": resources}
    if manifest.privileged:
        service["privileged"] = True
    return document


def _compose_volumes(manifest: Manifest, options: DeployOptions, service: dict[str, Any],
                     document: dict[str, Any]) -> None:
    mounts, configs = [], []
    for volume in manifest.volumes:
        target = _target(volume, options.workdir)
        if volume.type == "persistent":
            mounts.append({"type": "volume", "source": volume.name, "target": target})
            document.setdefault("volumes", {})[volume.name] = {}
        elif volume.type == "host":
            assert volume.host is not None
            mounts.append({"type": "bind", "source": volume.host.source, "target": target})
        else:
            configs.append({"source": volume.name, "target": target})
            document.setdefault("configs", {})[volume.name] = {"content": _text_of(volume)}
    if mounts:
        service["volumes"] = mounts
    if configs:
        service["configs"] = configs


def _text_of(volume: Volume) -> str:
    assert volume.text is not None
    if not volume.text.base64:
        return volume.text.data
    try:
        return base64.b64decode(volume.text.data, validate=True).decode(volume.text.encoding)
    except (binascii.Error, UnicodeDecodeError, LookupError):
        raise Invalid(f"volume '{volume.name}': its base64 data is not {volume.text.encoding} "
                      "text, which compose configs cannot carry (use --format kubernetes)"
                      ) from None


def _compose_ports(manifest: Manifest, service: dict[str, Any]) -> None:
    published, exposed = [], []
    for port in manifest.ports:
        if port.host is not None:
            published.append({"name": port.name, "target": port.host.port,
                              "published": str(port.host.port)})
        elif port.service is not None and port.service.exposed:
            outside = port.service.exposed_port or port.service.port
            published.append({"name": port.name, "target": port.service.port,
                              "published": str(outside)})
        elif port.service is not None:
            exposed.append(str(port.service.port))
    if published:
        service["ports"] = published
    if exposed:
        service["expose"] = exposed


def _compose_resources(manifest: Manifest) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for kind, amounts in (("reservations", manifest.resources.requests),
                          ("limits", manifest.resources.limits)):
        entry = {}
        if amounts.cpu:
            entry["cpus"] = _plain(parse_quantity(amounts.cpu))
        if amounts.memory:
            entry["memory"] = _compose_bytes(parse_quantity(amounts.memory))
        if entry:
            resources[kind] = entry
    return resources


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f")


def _compose_bytes(amount: Decimal) -> str:
    size = int(amount)
    for unit, factor in (("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}b"


# -- Kubernetes -------------------------------------------------------------------------------
def kubernetes_objects(manifest: Manifest,
                       options: DeployOptions | None = None) -> list[dict[str, Any]]:
    """A Deployment, plus the Services, PersistentVolumeClaims and ConfigMaps it uses."""
    options = options or DeployOptions()
    labels = {"app.kubernetes.io/name": manifest.name,
              "app.kubernetes.io/version": _label(manifest.version),
              "app.kubernetes.io/managed-by": "lakeport"}
    selector = {"app.kubernetes.io/name": manifest.name}
    container: dict[str, Any] = {
        "name": manifest.name,
        "image": options.image or f"{manifest.name}:{manifest.version}",
    }
    env = _kubernetes_env(manifest, options)
    if env:
        container["env"] = env
    ports = [_container_port(port) for port in manifest.ports]
    if ports:
        container["ports"] = ports
    resources = {kind: amounts for kind, amounts in (
        ("requests", manifest.resources.requests.model_dump(exclude_none=True)),
        ("limits", manifest.resources.limits.model_dump(exclude_none=True))) if amounts}
    if resources:
        container["resources"] = resources
    if manifest.privileged:
        container["securityContext"] = {"privileged": True}
    extra: list[dict[str, Any]] = []
    volumes, mounts = _kubernetes_volumes(manifest, options, labels, extra)
    if mounts:
        container["volumeMounts"] = mounts
    pod: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 30}
    if volumes:
        pod["volumes"] = volumes
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": manifest.name, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return [deployment, *_services(manifest, labels, selector), *extra]


def _label(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)[:63].strip("._-")


def _kubernetes_env(manifest: Manifest, options: DeployOptions) -> list[dict[str, Any]]:
    helpers: dict[str, dict[str, Any]] = {}
    env: list[dict[str, Any]] = []
    for name, value in _environment(manifest, options):
        parts = _parts(value)
        if len(parts) == 1 and parts[0][0]:
            env.append({"name": name, "valueFrom": _secret_ref(parts[0][1])})
            continue
        text = ""
        for is_secret, piece in parts:
            if is_secret:
                helper = secret_variable(piece)
                helpers.setdefault(helper, {"name": helper, "valueFrom": _secret_ref(piece)})
                text += f"$({helper})"
            else:
                text += _escape(piece)
        env.append({"name": name, "value": text})
    return [*helpers.values(), *env]  # a $(VAR) must be defined before it is used


def _secret_ref(name: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": SECRET_KEY}}


def _container_port(port: Any) -> dict[str, Any]:
    entry = {"name": port.name, "containerPort": port.container_port, "protocol": "TCP"}
    if port.host is not None:
        entry["hostPort"] = port.host.port
    return entry


def _services(manifest: Manifest, labels: dict[str, str],
              selector: dict[str, str]) -> list[dict[str, Any]]:
    inside, outside = [], []
    for index, port in enumerate(manifest.ports):
        if port.service is None:
            continue
        inside.append({"name": port.name, "port": port.service.port,
                       "targetPort": port.name, "protocol": "TCP"})
        if port.service.exposed:
            entry = {"name": port.name, "port": port.service.port, "targetPort": port.name,
                     "protocol": "TCP"}
            node_port = port.service.exposed_port
            if node_port is not None:
                if node_port not in NODE_PORTS:
                    raise Invalid(f"defaults.system.ports[{index}].service.exposed_port: "
                                  f"{node_port} is outside the Kubernetes node port range "
                                  "30000-32767")
                entry["nodePort"] = node_port
            outside.append(entry)
    services = []
    for name, kind, ports in ((manifest.name, "ClusterIP", inside),
                              (f"{manifest.name}-exposed", "NodePort", outside)):
        if ports:
            services.append({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": name, "labels": labels},
                             "spec": {"type": kind, "selector": selector, "ports": ports}})
    return services


def _kubernetes_volumes(manifest: Manifest, options: DeployOptions, labels: dict[str, str],
                        extra: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    volumes, mounts = [], []
    for volume in manifest.volumes:
        target = _target(volume, options.workdir)
        mount: dict[str, Any] = {"name": volume.name, "mountPath": target}
        object_name = f"{manifest.name}-{volume.name}"[:253]
        metadata = {"name": object_name, "labels": labels}
        if volume.type == "persistent":
            volumes.append({"name": volume.name,
                            "persistentVolumeClaim": {"claimName": object_name}})
            extra.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": metadata,
                          "spec": {"accessModes": ["ReadWriteOnce"],
                                   "resources": {"requests": {"storage": STORAGE_REQUEST}}}})
        elif volume.type == "host":
            assert volume.host is not None
            volumes.append({"name": volume.name, "hostPath": {"path": volume.host.source}})
        else:
            assert volume.text is not None
            key = re.sub(r"[^-._a-zA-Z0-9]", "_", posixpath.basename(target)) or "data"
            field = "binaryData" if volume.text.base64 else "data"
            extra.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                          field: {key: volume.text.data}})
            volumes.append({"name": volume.name, "configMap": {"name": object_name}})
            mount["subPath"] = key
            mount["readOnly"] = True
        mounts.append(mount)
    return volumes, mounts
