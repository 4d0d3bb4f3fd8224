"""``lakeport app validate|schema|manifest|deploy``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakeport.cli.app import app
from lakeport.cli.common import stderr

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest

PathArgument = Annotated[Path, typer.Argument(
    help="The app folder (with app.yaml) or its app.yaml.", show_default=False)]
ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="A JSON or YAML file of configuration options (over the manifest's "
    "defaults.configuration).", show_default=False)]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="key=value, the value read as JSON when it is (--set upload_interval=30); "
    "dotted keys set nested options. Repeat for more.", show_default=False)]
OutputOption = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write to this file instead of standard output.",
    show_default=False)]


class DeployFormat(StrEnum):
    compose = "compose"
    kubernetes = "kubernetes"


def _configuration(path: Path, config: Path | None,
                   sets: list[str] | None) -> dict[str, Any] | None:
    """defaults.configuration + ``--config`` + ``--set``; None when neither option is given."""
    if config is None and not sets:
        return None
    from lakeport.apps.manifest import ManifestError, read_document
    from lakeport.apps.runner import load_configuration_file, merge_configuration, parse_set_options

    try:
        _, data = read_document(path)
    except ManifestError:
        data = {}
    defaults = data.get("defaults")
    base = defaults.get("configuration") if isinstance(defaults, dict) else None
    from_file = load_configuration_file(config) if config is not None else {}
    return merge_configuration(base if isinstance(base, dict) else {}, from_file,
                               parse_set_options(sets or ()))


def _report(problems: list[str], path: Path) -> None:
    """Print every problem on stdout, one per line, and exit 1."""
    for problem in problems:
        print(problem)
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    stderr.print(f"error: {count} in {path}", style="red", markup=False, soft_wrap=True)
    raise typer.Exit(1)


def print_warnings(warnings: list[str]) -> None:
    """Print each warning on stderr as ``warning: path: why``."""
    for warning in warnings:
        stderr.print(f"warning: {warning}", style="yellow", markup=False, soft_wrap=True)


def _checked(path: Path, configuration: dict[str, Any] | None) -> Manifest:
    """The manifest at ``path`` when it has no problem (secrets aside); else report and exit 1."""
    from lakeport.apps.manifest import inspect_app, load_manifest

    found = inspect_app(path, configuration=configuration, check_secrets=False)
    print_warnings(found.warnings)
    if found.problems:
        _report(found.problems, path)
    return load_manifest(path)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    try:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        from lakeport.errors import Invalid

        raise Invalid(f"--output {output}: cannot write it ({exc.strerror})") from None
    stderr.print(f"wrote {output}", markup=False, soft_wrap=True)


@app.command("validate")
def validate(path: PathArgument, config: ConfigOption = None, sets: SetOption = None) -> None:
    """Check an app: app.yaml, its configuration, ui_schemas files and secrets.

    The configuration (defaults.configuration, or with --config/--set) is checked against
    ui_schemas.configuration. Prints every problem as 'path: message' and exits 1 if there is any;
    keys the vendor's format ignores are warnings on stderr ('warning: path: ...', exit 0).
    Example: lakeport app validate demo-exporter --set upload_interval=30
    """
    from lakeport.apps.manifest import inspect_app, load_manifest

    found = inspect_app(path, configuration=_configuration(path, config, sets))
    print_warnings(found.warnings)
    if found.problems:
        _report(found.problems, path)
    manifest = load_manifest(path)
    print(f"✓ {manifest.name} ({manifest.type}) is valid")


@app.command("schema")
def schema(output: OutputOption = None) -> None:
    """Print the JSON Schema of app.yaml (for editors: yaml-language-server, VS Code)."""
    from lakeport.apps.manifest import manifest_json_schema

    _write(json.dumps(manifest_json_schema(), indent=2), output)


@app.command("manifest")
def show_manifest(path: PathArgument, config: ConfigOption = None,
                  sets: SetOption = None) -> None:
    """Print the resolved manifest as YAML, secrets masked as ***.

    Defaults are filled in and --config/--set are applied to the configuration.
    """
    from lakeport.apps.manifest import dump_yaml

    configuration = _configuration(path, config, sets)
    manifest = _checked(path, configuration)
    print(dump_yaml(manifest.resolved(configuration)), end="")


@app.command("deploy")
def deploy(
    path: PathArgument,
    fmt: Annotated[DeployFormat, typer.Option(
        "--format", "-f", help="compose: a docker compose file; kubernetes: a Deployment "
        "with its Services, PersistentVolumeClaims and ConfigMaps.", show_default=False)],
    output: OutputOption = None,
    image: Annotated[str | None, typer.Option(
        "--image", help="The container image (default: <name>:<version>).",
        show_default=False)] = None,
    streams: Annotated[str | None, typer.Option(
        "--streams", help="The streams URL the app uses (LAKEPORT_STREAMS), e.g. "
        "nats://nats:4222.", show_default=False)] = None,
    workdir: Annotated[str | None, typer.Option(
        "--workdir", help="The image's working folder: relative volume targets go under it "
        "(default: the last WORKDIR of the app's Dockerfile, else /app).",
        show_default=False)] = None,
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """Write a docker compose file or Kubernetes objects that deploy the app.

    They carry defaults.system: environment variables (secrets as references, never values),
    volumes, ports, resources and privileged; and the configuration (defaults.configuration,
    --config, --set) as JSON in LAKEPORT_APP_CONFIGURATION, as lakeport app run passes it.
    Warnings (e.g. a persistent volume whose target is a file) are printed on stderr.
    Example: lakeport app deploy demo-exporter --format kubernetes -o demo.yaml
    """
    from lakeport.apps.deploy import DeployOptions, render_deployment
    from lakeport.errors import Invalid

    if workdir is not None and not workdir.startswith("/"):
        raise Invalid(f"--workdir {workdir}: must be an absolute path in the image")
    configuration = _configuration(path, config, sets)
    manifest = _checked(path, configuration)
    options = DeployOptions(image=image, configuration=configuration, streams_url=streams,
                            workdir=workdir)
    deployment = render_deployment(manifest, fmt.value, options)
    print_warnings(deployment.warnings)
    _write(deployment.text, output)
