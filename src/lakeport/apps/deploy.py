"""Deployment files from an app's ``defaults.system``: docker compose or Kubernetes.

Secrets are referenced, never written: Kubernetes reads each from a Secret of the same name
(key ``value``) through ``secretKeyRef``; compose reads ``LAKEPORT_SECRET_<NAME>`` from the
environment of ``docker compose up``. The configuration reaches the app as ``lakeport app run``
passes it: ``LAKEPORT_APP_CONFIGURATION``, its JSON text unchanged (``$`` written as ``$$``,
which compose and Kubernetes both read back as ``$``); the secrets it references are passed as
``LAKEPORT_SECRET_<NAME>`` beside it. Relative volume targets are placed under the image's
working folder: the last ``WORKDIR`` of the app's Dockerfile, else ``/app``.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import yaml

from lakeport.apps.dockerfile import image_workdir
from lakeport.apps.manifest import Manifest
from lakeport.apps.manifest_models import Volume, parse_quantity
from lakeport.apps.runner import configuration_json
from lakeport.apps.secrets import SECRET_REF, secret_refs
from lakeport.apps.volumes import looks_like_a_file
from lakeport.errors import Invalid

DeployFormat = Literal["compose", "kubernetes"]
FORMATS: tuple[str, ...] = ("compose", "kubernetes")
SECRET_KEY = "value"
NODE_PORTS = range(30000, 32768)
STORAGE_REQUEST = "1Gi"
CONFIGURATION_VARIABLE = "LAKEPORT_APP_CONFIGURATION"


@dataclass(frozen=True)
class DeployOptions:
    """What a deployment adds to the manifest.

    ``image`` defaults to ``<name>:<version>``; ``configuration`` (default: the manifest's
    ``defaults.configuration``) is passed as ``LAKEPORT_APP_CONFIGURATION``; ``streams_url``
    as ``LAKEPORT_STREAMS``; relative volume targets are placed under ``workdir`` (default:
    the last ``WORKDIR`` of the app's Dockerfile, else ``/app``).
    """

    image: str | None = None
    configuration: dict[str, Any] | None = None
    streams_url: str | None = None
    workdir: str | None = None


@dataclass(frozen=True)
class Deployment:
    """A rendered deployment: the YAML ``text``, the ``documents`` it holds and ``warnings``
    the user should read (one line each)."""

    text: str
    documents: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Mount:
    volume: Volume
    path: str


@dataclass(frozen=True)
class _Plan:
    """What both formats are written from."""

    manifest: Manifest
    options: DeployOptions
    workdir: str
    workdir_source: str
    environment: list[tuple[str, list[tuple[bool, str]]]]
    mounts: list[_Mount]
    warnings: list[str]


class _Dumper(yaml.SafeDumper):
    """Writes repeated values out in full (no ``&id001`` anchors) on long lines."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                         width=1 << 16)


def render_deployment(manifest: Manifest, fmt: str,
                      options: DeployOptions | None = None) -> Deployment:
    """A compose file or Kubernetes objects for ``manifest``, as YAML text and documents."""
    if fmt not in FORMATS:
        raise Invalid(f"unknown deploy format '{fmt}': use one of {', '.join(FORMATS)}")
    plan = _plan(manifest, options or DeployOptions())
    documents = [_compose_file(plan)] if fmt == "compose" else _kubernetes_objects(plan)
    return Deployment(_header(plan, fmt) + _dump(documents), documents, plan.warnings)


def _plan(manifest: Manifest, options: DeployOptions) -> _Plan:
    if options.workdir is not None:
        workdir, source = options.workdir, "given"
    else:
        workdir, source = image_workdir(manifest.folder)
    warnings: list[str] = []
    return _Plan(manifest, options, workdir, source, _environment(manifest, options),
                 _mounts(manifest, workdir, warnings), warnings)


def _header(plan: _Plan, fmt: str) -> str:
    manifest = plan.manifest
    lines = [f"{manifest.name} {manifest.version} ({manifest.type}): written by "
             f"lakeport app deploy --format {fmt} from {manifest.folder / 'app.yaml'}",
             f"The image's working folder is {plan.workdir} ({plan.workdir_source})."]
    secrets = _secrets_used(plan)
    if secrets and fmt == "kubernetes":
        lines.append("Secrets are referenced, not included. Create them first:")
        lines += [f"  kubectl create secret generic {name} --from-literal={SECRET_KEY}=..."
                  for name in secrets]
    elif secrets:
        lines.append("Secrets are referenced, not included. Set them before "
                     "docker compose up:")
        lines += [f"  export {secret_variable(name)}=..." for name in secrets]
    if plan.options.streams_url is None:
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


def _environment(manifest: Manifest,
                 options: DeployOptions) -> list[tuple[str, list[tuple[bool, str]]]]:
    """Each variable's name and value, the value cut into literal text and secret names."""
    env = [(variable.name, _parts(variable.value)) for variable in manifest.environment_vars]
    configuration = (manifest.defaults.configuration if options.configuration is None
                     else options.configuration)
    text = configuration_json(configuration)  # exactly what lakeport app run passes
    env.append((CONFIGURATION_VARIABLE, [(False, text)]))
    if options.streams_url is not None:
        env.append(("LAKEPORT_STREAMS", [(False, options.streams_url)]))
    env += [(secret_variable(name), [(True, name)]) for name in secret_refs(text)]
    return env


def _secrets_used(plan: _Plan) -> list[str]:
    names = [piece for _, parts in plan.environment for is_secret, piece in parts if is_secret]
    return list(dict.fromkeys(names))


def _escape(text: str) -> str:
    """Compose and Kubernetes both read ``$$`` as a literal ``$``."""
    return text.replace("$", "$$")


def _target(volume: Volume, workdir: str) -> str:
    return posixpath.normpath(posixpath.join(workdir, volume.target))


def _mounts(manifest: Manifest, workdir: str, warnings: list[str]) -> list[_Mount]:
    """Where each volume is mounted; a persistent volume whose target looks like a file is
    mounted as that file's folder (a volume is a folder), with a warning."""
    mounts: list[_Mount] = []
    used: dict[str, str] = {}
    for volume in manifest.volumes:
        path = _target(volume, workdir)
        if volume.type == "persistent" and looks_like_a_file(volume.target):
            path = posixpath.dirname(path)
            if path == "/":
                raise Invalid(f"volume '{volume.name}': its target {volume.target} looks like a "
                              "file in /, which cannot be a volume: give it a folder of its own")
            warning = (f"volume '{volume.name}': its target {volume.target} looks like a file, "
                       f"so its folder {path} is mounted (end the target with / if it is a "
                       "folder)")
            if posixpath.commonpath([path, workdir]) == path:
                warning += (f"; the volume hides what the image has in {path}, the app's "
                            "files too when they are there (compose fills a new volume with "
                            "them once, Kubernetes does not): a target in a folder of its own, "
                            f"e.g. data/{posixpath.basename(volume.target)}, avoids that")
            warnings.append(warning)
        if path in used:
            raise Invalid(f"defaults.system.volumes: '{used[path]}' and '{volume.name}' are "
                          f"both mounted at {path}: give them targets in different folders")
        used[path] = volume.name
        mounts.append(_Mount(volume, path))
    return mounts


# -- docker compose ---------------------------------------------------------------------------
def _compose_file(plan: _Plan) -> dict[str, Any]:
    """A compose file (``services``, ``volumes``, ``configs``) running the app."""
    manifest, options = plan.manifest, plan.options
    service: dict[str, Any] = {
        "image": options.image or f"{manifest.name}:{manifest.version}",
        "restart": "unless-stopped",
        "stop_grace_period": "30s",
    }
    environment = {
        name: "".join(f"${{{secret_variable(p)}:?set {secret_variable(p)} to secret {p}}}"
                      if is_secret else _escape(p) for is_secret, p in parts)
        for name, parts in plan.environment}
    if environment:
        service["environment"] = environment
    document: dict[str, Any] = {"services": {manifest.name: service}}
    _compose_volumes(plan, service, document)
    _compose_ports(manifest, service)
    resources = _compose_resources(manifest)
    if resources:
        service["deploy"] = {"resources": resources}
    if manifest.privileged:
        service["privileged"] = True
    return document


def _compose_volumes(plan: _Plan, service: dict[str, Any], document: dict[str, Any]) -> None:
    mounts, configs = [], []
    for mount in plan.mounts:
        volume, target = mount.volume, mount.path
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
def _kubernetes_objects(plan: _Plan) -> list[dict[str, Any]]:
    """A Deployment, plus the Services, PersistentVolumeClaims and ConfigMaps it uses."""
    manifest, options = plan.manifest, plan.options
    labels = {"app.kubernetes.io/name": manifest.name,
              "app.kubernetes.io/version": _label(manifest.version),
              "app.kubernetes.io/managed-by": "lakeport"}
    selector = {"app.kubernetes.io/name": manifest.name}
    container: dict[str, Any] = {
        "name": manifest.name,
        "image": options.image or f"{manifest.name}:{manifest.version}",
    }
    env = _kubernetes_env(plan)
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
    volumes, mounts = _kubernetes_volumes(plan, labels, extra)
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


def _kubernetes_env(plan: _Plan) -> list[dict[str, Any]]:
    helpers: dict[str, dict[str, Any]] = {}
    env: list[dict[str, Any]] = []
    for name, parts in plan.environment:
        if len(parts) == 1 and parts[0][0]:
            entry = {"name": name, "valueFrom": _secret_ref(parts[0][1])}
            if name == secret_variable(parts[0][1]):  # a secret the configuration names
                helpers.setdefault(name, entry)
            else:
                env.append(entry)
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


def _kubernetes_volumes(plan: _Plan, labels: dict[str, str],
                        extra: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    volumes, mounts = [], []
    for planned in plan.mounts:
        volume, target = planned.volume, planned.path
        object_name = f"{plan.manifest.name}-{volume.name}"[:253]
        mount: dict[str, Any] = {"name": volume.name, "mountPath": target}
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
