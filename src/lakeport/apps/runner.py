"""What ``lakeport app run`` does: resolve the configuration, build the environment, run main.py.

The app runs as a child process (``python main.py`` in its folder, with the interpreter of
its own environment: :mod:`lakeport.apps.environment`) with:

- ``LAKEPORT_APP_DIR``: the app folder;
- ``LAKEPORT_APP_CONFIGURATION``: the configuration as JSON (``defaults.configuration``, then
  the ``--config`` file, then ``--set`` overrides);
- ``LAKEPORT_STREAMS``: the streams engine URL;
- the manifest's ``defaults.system.environment_vars``, with ``<% secrets.NAME %>`` resolved.

SIGTERM and SIGINT are passed on to the app, which stops gracefully; the runner exits with
the app's exit code.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import yaml

from lakeport.errors import Invalid, NotFound

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest
    from lakeport.apps.secrets import SecretStore

ENTRYPOINT = "main.py"
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# -- configuration -------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """``500`` → 500, ``true`` → True, ``[1,2]`` → a list, anything else stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_set_options(items: Iterable[str]) -> dict[str, Any]:
    """``["rows=500", "sink.path=/data"]`` → ``{"rows": 500, "sink": {"path": "/data"}}``."""
    result: dict[str, Any] = {}
    for item in items:
        key, equals, text = item.partition("=")
        parts = key.strip().split(".")
        if not equals or not all(part.strip() for part in parts):
            raise Invalid(f"bad --set {item!r}: use key=value (a dotted key like a.b=1 for a "
                          "nested option)")
        target = result
        for depth, part in enumerate(parts[:-1]):
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise Invalid(f"bad --set {item!r}: {'.'.join(parts[: depth + 1])} is already "
                              "set to a value")
            target = child
        target[parts[-1]] = parse_value(text)
    return result


def load_configuration_file(path: str | Path) -> dict[str, Any]:
    """A configuration object from a JSON or YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"--config {path}: cannot read it ({exc})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"--config {path} line {exc.lineno}, column {exc.colno}: "
                      f"{exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise Invalid(f"--config {path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Invalid(f"--config {path}: must hold an object of options, not "
                      f"{type(data).__name__}")
    return data


def merge_configuration(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; nested objects are merged key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
                merged[key] = merge_configuration(merged[key], value)
            else:
                merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def resolve_configuration(manifest: Manifest, config_file: str | Path | None = None,
                          sets: Iterable[str] = ()) -> dict[str, Any]:
    """``defaults.configuration`` + the ``--config`` file + ``--set`` overrides."""
    from_file = load_configuration_file(config_file) if config_file is not None else {}
    return merge_configuration(manifest.defaults.configuration, from_file,
                               parse_set_options(sets))


# -- environment ---------------------------------------------------------------------------
def configuration_json(configuration: Mapping[str, Any]) -> str:
    """The configuration as the app gets it (``LAKEPORT_APP_CONFIGURATION``); a value JSON
    cannot hold (a YAML date, say) is one line naming it."""
    try:
        return json.dumps(configuration)
    except (TypeError, ValueError) as exc:
        raise Invalid(f"configuration: cannot be passed to the app as JSON ({exc})") from None


def app_environment(
    manifest: Manifest,
    configuration: Mapping[str, Any],
    streams_url: str,
    secrets: SecretStore,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The app's environment: ``base`` (default: ours), its declared variables, lakeport's."""
    from lakeport.apps.secrets import resolve_secrets

    env = dict(os.environ if base is None else base)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for variable in manifest.defaults.system.environment_vars:
        value = variable.value
        text = value if isinstance(value, str) else json.dumps(value)
        env[variable.name] = resolve_secrets(text, secrets)
    env["LAKEPORT_APP_DIR"] = str(Path(manifest.folder).resolve())
    env["LAKEPORT_APP_CONFIGURATION"] = configuration_json(configuration)
    env["LAKEPORT_STREAMS"] = streams_url
    return env


# -- the process ---------------------------------------------------------------------------
def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the app gets SIGKILL if the runner dies without passing a signal on."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def exit_code(returncode: int) -> int:
    """A child's return code as a shell shows it: killed by signal N → 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def run_app_process(folder: str | Path, env: Mapping[str, str],
                    entrypoint: str = ENTRYPOINT, python: str | Path | None = None) -> int:
    """Run ``python <entrypoint>`` in ``folder``, pass SIGTERM/SIGINT on, return its exit code.

    ``python`` is the app environment's interpreter (default: lakeport's own).

    The app has its own process group, so a Ctrl-C in the terminal reaches it once (from
    here), not twice.
    """
    folder = Path(folder)
    if not (folder / entrypoint).is_file():
        raise NotFound(f"{folder / entrypoint}: no such file: the app's code starts there")
    process = subprocess.Popen(
        [str(python or sys.executable), entrypoint], cwd=folder, env=dict(env), process_group=0,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        return exit_code(process.wait())
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if process.poll() is None:  # pragma: no cover - only if wait() itself failed
            process.kill()
            process.wait()
