"""``lakeport app create``: a new app folder from the template of its type.

Templates live in ``templates/<type>/`` (package data), with files shared by every type in
``templates/common/``. ``{{name}}`` and ``{{title}}`` in a template's text are replaced.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from lakeport.apps.manifest_models import DNS_NAME
from lakeport.errors import Conflict, Invalid

APP_TYPES = ("app", "importer", "exporter", "docker")
NAME_RE = re.compile(DNS_NAME)
_SKIPPED = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def check_app_name(name: str) -> str:
    """``name`` if it is DNS-style (``my-app``: a-z, 0-9 and '-', 1-63), else Invalid."""
    if not NAME_RE.fullmatch(name or "") or len(name) > 63:
        raise Invalid(
            f"bad app name {name!r}: use 1-63 lowercase letters, digits and '-', not "
            "starting or ending with '-' (e.g. 'demo-exporter')"
        )
    return name


def title_of(name: str) -> str:
    """``demo-exporter`` → ``Demo Exporter``."""
    return " ".join(part.capitalize() for part in name.split("-") if part)


def _templates() -> Traversable:
    return resources.files("lakeport.apps").joinpath("templates")


def _walk(folder: Traversable, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], bytes]:
    files: dict[tuple[str, ...], bytes] = {}
    for entry in folder.iterdir():
        if entry.name in _SKIPPED or entry.name.endswith(".pyc"):
            continue
        if entry.is_dir():
            files.update(_walk(entry, (*prefix, entry.name)))
        else:
            files[(*prefix, entry.name)] = entry.read_bytes()
    return files


def render_template(app_type: str, name: str) -> dict[str, str]:
    """The files of a new app of ``app_type`` named ``name``: relative path → text."""
    if app_type not in APP_TYPES:
        raise Invalid(f"bad app type {app_type!r}: use one of {', '.join(APP_TYPES)}")
    root = _templates()
    files = _walk(root.joinpath("common"))
    files.update(_walk(root.joinpath(app_type)))
    replacements = {"{{name}}": name, "{{title}}": title_of(name), "{{type}}": app_type}
    rendered: dict[str, str] = {}
    for parts, data in sorted(files.items()):
        text = data.decode("utf-8")
        for placeholder, value in replacements.items():
            text = text.replace(placeholder, value)
        rendered["/".join(parts)] = text
    return rendered


def create_app(name: str, app_type: str, parent: str | Path = ".") -> Path:
    """Write the folder ``parent/name`` for a new app; return it.

    Refuses a bad name, an unknown type and an existing folder that is not empty.
    """
    check_app_name(name)
    files = render_template(app_type, name)
    folder = Path(parent) / name
    if folder.exists() and not folder.is_dir():
        raise Conflict(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise Conflict(f"{folder}: folder exists and is not empty: choose another name or "
                       "--dir, or remove it")
    for relative, text in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return folder
