"""``lakeport app create|run`` and ``lakeport app test simulator|csv``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from lakeport.cli.app import app, test_app
from lakeport.cli.common import UrlOption, duration, parse_option, run, stderr, stop_on_signals
from lakeport.errors import Invalid

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest
    from lakeport.streams.base import Engine

NOT_STARTED = "the app was not started"
NOTHING_SENT = "nothing was sent"
PathArgument = Annotated[Path, typer.Argument(
    help="The app folder (with app.yaml) or its app.yaml.", show_default=False)]


def _refuse(problems: list[str], path: Path, outcome: str) -> NoReturn:
    """Print every problem of the app (one per line) on stderr, then the outcome; exit 1."""
    for problem in problems:
        stderr.print(problem, markup=False, soft_wrap=True)
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    stderr.print(f"error: {count} in {path}: {outcome}", style="red", markup=False,
                 soft_wrap=True)
    raise typer.Exit(1)


def _load(path: Path, outcome: str) -> Manifest:
    """The app's manifest; its problems printed (then exit 1) when it has any."""
    from lakeport.apps.manifest import ManifestError, load_manifest

    try:
        return load_manifest(path)
    except ManifestError as exc:
        _refuse(exc.problems, path, outcome)


def _say(line: str) -> None:
    """A progress line on stderr."""
    stderr.print(line, markup=False, soft_wrap=True, style="dim")


# -- create --------------------------------------------------------------------------------
@app.command("create")
def create(
    name: Annotated[str, typer.Argument(
        help="The app's name, DNS-style (e.g. demo-exporter); also its folder's name.",
        show_default=False)],
    app_type: Annotated[str, typer.Option(
        "--type", "-t", help="app, importer, exporter or docker.")] = "app",
    parent: Annotated[Path, typer.Option(
        "--dir", help="The folder to create the app's folder in.")] = Path("."),
) -> None:
    """Create an app folder that validates and runs as created.

    It holds app.yaml, main.py, requirements.txt, a Dockerfile, schemas/configuration.json,
    a README and test_app.py. Example: lakeport app create demo-exporter --type exporter
    """
    from lakeport.apps.scaffold import create_app

    folder = create_app(name, app_type, parent)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    print(f"created {app_type} {name} in {folder}/: {', '.join(files)}")
    print("next:")
    print(f"  lakeport app validate {folder}")
    print(f"  python -m pytest {folder / 'test_app.py'}")
    print(f"  lakeport app run {folder}")
    if app_type != "docker":
        print(f"  lakeport app test simulator {folder}   (in another terminal)")


# -- run -----------------------------------------------------------------------------------
@app.command("run")
def run_app(
    path: PathArgument,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="A JSON or YAML file of configuration options (over the "
        "manifest's defaults.configuration).", show_default=False)] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="key=value, the value read as JSON when it is (--set batch_rows=500); "
        "dotted keys set nested options. Repeat for more.", show_default=False)] = None,
    url: UrlOption = None,
    kelvin: Annotated[bool, typer.Option(
        "--kelvin", help="Serve the Kelvin stream protocol to the app (automatic when its "
        "code imports kelvin).")] = False,
    assets: Annotated[list[str] | None, typer.Option(
        "--asset", help="Kelvin apps: an asset the app is deployed to; repeat for more "
        "(default: asset-01 … asset-10, as the simulator sends, plus any other that shows "
        "up).", show_default=False)] = None,
    deployment: Annotated[Path | None, typer.Option(
        "--deployment", help="Kelvin apps: a YAML file of assets with their parameters, "
        "properties and datastreams (see docs/apps/kelvin.md).", show_default=False)] = None,
    ack_after: Annotated[str | None, typer.Option(
        "--ack-after", help="Kelvin apps: ack a message only once the app has run this long "
        "after receiving it (30s); 0 acks it once written to the app. Default: 30s for "
        "exporters, 0 for other apps.", show_default=False)] = None,
    max_in_flight: Annotated[int, typer.Option(
        "--max-in-flight", help="Kelvin apps: messages sent to the app and not acked yet, at "
        "most (with --ack-after this bounds the rate to N per ack-after).")] = 10_000,
) -> None:
    """Validate the app, then run its main.py until it stops (SIGTERM/Ctrl-C stop it gracefully).

    main.py runs with the interpreter of the app's own environment, built from its
    requirements.txt on the first run (progress on stderr) and reused until the file changes.
    The app gets LAKEPORT_APP_DIR, LAKEPORT_APP_CONFIGURATION (JSON), LAKEPORT_STREAMS, the
    manifest's environment_vars with secrets resolved, and its persistent volumes under
    $LAKEPORT_HOME/apps/<app>/volumes/ (linked at their targets). An app written with the
    Kelvin SDK (kelvin-python-sdk) gets a Kelvin stream endpoint bridged to its lakeport
    topics (KELVIN_STREAM_IP / KELVIN_STREAM_PORT). Exits with the app's exit code.
    Example: lakeport app run azure-data-lake-uploader --set upload_interval=30
    """
    from lakeport.apps.environment import ensure_environment
    from lakeport.apps.kelvin import launch
    from lakeport.apps.manifest import check_app
    from lakeport.apps.runner import app_environment, resolve_configuration, run_app_process
    from lakeport.apps.secrets import SecretStore
    from lakeport.apps.volumes import prepare_volumes
    from lakeport.cli.app_manifest import print_warnings
    from lakeport.home import default_streams_url

    manifest = _load(path, NOT_STARTED)
    configuration = resolve_configuration(manifest, config, sets or ())
    secrets = SecretStore()
    problems = check_app(path, configuration=configuration, secrets=secrets)
    if problems:
        _refuse(problems, path, NOT_STARTED)
    print_warnings(manifest.warnings)
    env = app_environment(manifest, configuration, url or default_streams_url(), secrets)
    is_kelvin = kelvin or launch.uses_vendor_sdk(manifest.folder)
    if not is_kelvin and (assets or deployment is not None or ack_after is not None):
        raise Invalid("--asset, --deployment and --ack-after apply to Kelvin apps only "
                      "(their code imports kelvin; or add --kelvin)")
    if is_kelvin:
        runtime, delivery = launch.prepare(manifest, configuration, assets=assets or [],
                                           deployment=deployment,
                                           ack_after=duration(ack_after, "--ack-after"),
                                           max_in_flight=max_in_flight)
    volumes = prepare_volumes(manifest)
    print_warnings(volumes.warnings)
    env.update(volumes.environment)
    environment = ensure_environment(manifest.folder, on_progress=_say)
    if not is_kelvin:
        raise typer.Exit(run_app_process(manifest.folder, env, python=environment.python))
    raise typer.Exit(launch.run_with_bridge(runtime, env, url=url or default_streams_url(),
                                            delivery=delivery, python=environment.python,
                                            on_progress=_say))


# -- configure -----------------------------------------------------------------------------
@app.command("configure")
def configure(
    path: PathArgument,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="A JSON or YAML file of configuration options.",
        show_default=False)] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="key=value (value read as JSON when it is); repeat for more.",
        show_default=False)] = None,
    url: UrlOption = None,
) -> None:
    """Change the configuration of a running app (when its manifest allows it).

    The new configuration is the manifest's defaults with --config and --set on top; it is
    checked against ui_schemas.configuration first. Example:
    lakeport app configure demo-app --set threshold=80
    """
    from lakeport.apps.configuration import runtime_updates_allowed, send_configuration
    from lakeport.apps.runner import resolve_configuration

    manifest = _load(path, "nothing was sent")
    if not runtime_updates_allowed(manifest):
        raise Invalid(
            f"{manifest.name} does not allow runtime configuration updates "
            "(set flags.enable_runtime_update.configuration: true in app.yaml)"
        )
    configuration = resolve_configuration(manifest, config, sets or ())
    problems = manifest.validate_configuration(configuration)
    if problems:
        _refuse(problems, path, "nothing was sent")
    seqno = run(send_configuration(manifest.name, configuration, url))
    print(f"sent configuration to {manifest.name} (seqno {seqno}); the app's log says whether "
          "it applied it")


# -- action --------------------------------------------------------------------------------
@app.command("action")
def action(
    path: PathArgument,
    name: Annotated[str, typer.Argument(
        help="The custom action's type (app.yaml custom_actions.inputs).", show_default=False)],
    payload: Annotated[str, typer.Option(help="The action's payload: a JSON object.")] = "{}",
    asset: Annotated[str | None, typer.Option(
        help="The asset the action is for (default: the app itself).",
        show_default=False)] = None,
    title: Annotated[str | None, typer.Option(
        help="A title for the action (default: its type).", show_default=False)] = None,
    timeout: Annotated[str, typer.Option(help="How long to wait for the app's result.")] = "30s",
    url: UrlOption = None,
) -> None:
    """Send a custom action to a running Kelvin app and print its result as JSON.

    Exits 0 when the app reports success, 1 when it reports a failure or sends no result in
    time. Example: lakeport app action demo-app reset --payload '{"level": 2}' --asset asset-01
    """
    import json

    from lakeport.apps.kelvin.actions import new_action, send_action
    from lakeport.apps.kelvin.runtime import declared_custom_actions
    from lakeport.apps.kelvin.wire import app_krn

    manifest = _load(path, NOTHING_SENT)
    declared = declared_custom_actions(manifest)["inputs"]
    if name not in declared:
        known = ", ".join(declared) if declared else "none (custom_actions.inputs in app.yaml)"
        raise Invalid(f"{manifest.name} takes no custom action {name!r}: it takes {known}")
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise Invalid(f"--payload is not JSON: {exc}") from None
    seconds = duration(timeout, "--timeout") or 0.0
    request = new_action(name, body, resource=app_krn(manifest.name, manifest.version),
                         asset=asset, title=title or "")
    result = run(send_action(manifest.name, request, url=url, timeout=seconds))
    print(json.dumps(result.to_record()))
    if not result.success:
        raise typer.Exit(1)


# -- test simulator / csv ------------------------------------------------------------------
class _RateColumn(ProgressColumn):
    """Messages per second, once rich has measured it."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("" if speed is None else f"{speed:,.0f} msgs/s", style="progress.data.speed")


def _progress(description: str, total: int | None) -> tuple[Progress, TaskID]:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
        TimeElapsedColumn(), console=stderr, transient=False,
    )
    return progress, progress.add_task(description, total=total)


async def _send(url: str | None, description: str, total: int | None,
                send: Callable[..., Awaitable[dict[str, int]]]) -> dict[str, int]:
    """Open the engine and run ``send(engine, stop, on_sent)`` with live progress on stderr."""
    from lakeport.streams import open_engine

    progress, task = _progress(description, total)
    async with open_engine(url) as engine:
        with stop_on_signals() as stop, progress:
            return await send(engine, stop,
                              lambda sent: progress.update(task, completed=sent))


def _nothing_to_send(manifest: Manifest) -> None:
    """Say why an app that reads nothing gets nothing, and print the count (0)."""
    if manifest.type == "docker":
        why = "is a docker app: docker apps read no data streams"
    elif manifest.type == "importer":
        why = "has no importer_io with control: true, so it reads no control changes"
    else:
        why = "declares no data stream or control change inputs"
    stderr.print(f"{manifest.name} {why}: nothing to send", markup=False, soft_wrap=True)
    print("sent 0 messages")


@test_app.command("simulator")
def simulator(
    path: PathArgument,
    assets: Annotated[int, typer.Option(help="Simulated assets asset-01 … asset-NN.")] = 10,
    rate: Annotated[str, typer.Option(
        help="Messages per second over all assets and datastreams (100/s, 600/m).")] = "100/s",
    pattern: Annotated[str, typer.Option(help="random, sine, ramp or counter.")] = "random",
    duration_: Annotated[str, typer.Option(
        "--duration", help="How long to send (30s, 5m); 0 sends until Ctrl-C.")] = "30s",
    url: UrlOption = None,
) -> None:
    """Publish simulated data shaped by the app's manifest to the topics the app reads.

    An app gets its data stream inputs (and control change inputs), an exporter one
    datastream per data type its exporter_io accepts, an importer control changes for its
    IOs with control: true. Prints 'sent N messages to <topics>' at the end.
    """
    from lakeport.apps.simulator import (
        PATTERNS,
        Simulator,
        describe_counts,
        parse_rate,
        plan_series,
    )

    per_second = parse_option(parse_rate, rate, "--rate")
    seconds = duration(duration_, "--duration") or 0.0
    if assets < 1:
        raise Invalid(f"bad --assets {assets}: use 1 or more")
    if pattern not in PATTERNS:
        raise Invalid(f"bad --pattern {pattern!r}: use one of {', '.join(PATTERNS)}")
    manifest = _load(path, NOTHING_SENT)
    series = plan_series(manifest)
    if not series:
        _nothing_to_send(manifest)
        return
    simulation = Simulator(series, assets, pattern)
    total = round(per_second * seconds) if seconds else None

    async def send(engine: Engine, stop: asyncio.Event,
                   on_sent: Callable[[int], None]) -> dict[str, int]:
        from lakeport.apps.simulator import simulate

        return await simulate(engine, simulation, rate=per_second, total=total, stop=stop,
                              on_sent=on_sent)

    counts = run(_send(url, f"{manifest.name} ←", total, send))
    print(describe_counts(counts))


@test_app.command("csv")
def csv_replay(
    path: PathArgument,
    file: Annotated[Path, typer.Argument(
        help="CSV with a header time,asset,datastream,value[,unit].", show_default=False)],
    replay: Annotated[bool, typer.Option(
        "--replay", help="Pace rows by their time column (scaled by --speed).")] = False,
    speed: Annotated[float, typer.Option(
        help="With --replay: 2 replays twice as fast as the times say.")] = 1.0,
    rate: Annotated[str | None, typer.Option(
        help="Send at this many rows per second (100/s); default: as fast as possible.",
        show_default=False)] = None,
    url: UrlOption = None,
) -> None:
    """Publish the rows of a CSV file to the topics the app reads, typed by its manifest.

    The file is checked first: a bad row stops everything with its line number, and nothing
    is sent. Prints 'sent N messages to <topics>' at the end.
    """
    from lakeport.apps.csv_replay import CsvPlan, read_rows, send_rows
    from lakeport.apps.simulator import describe_counts, parse_rate

    per_second = parse_option(parse_rate, rate, "--rate")
    if replay and per_second is not None:
        raise Invalid("use either --replay (pace by the time column) or --rate, not both")
    if not speed > 0:
        raise Invalid(f"bad --speed {speed:g}: use more than 0")
    manifest = _load(path, NOTHING_SENT)
    plan = CsvPlan(manifest)
    if plan.reads_nothing:
        _nothing_to_send(manifest)
        return
    rows = read_rows(file, plan, need_time=replay)

    async def send(engine: Engine, stop: asyncio.Event,
                   on_sent: Callable[[int], None]) -> dict[str, int]:
        return await send_rows(engine, rows, replay=replay, speed=speed, rate=per_second,
                               stop=stop, on_sent=on_sent)

    counts = run(_send(url, f"{manifest.name} ← {file.name}", len(rows), send))
    print(describe_counts(counts))

