"""An app's volumes when ``lakeport app run`` runs it on this machine, without a container.

In a container a volume is mounted at its ``target``; a relative target, or one under the
image's working folder (the Dockerfile's ``WORKDIR``), is a path inside the app folder, where
``app run`` starts the app. So such a target becomes a symbolic link in the app folder:

- ``persistent``: to a folder under ``$LAKEPORT_HOME/apps/<app>/volumes/<volume>/`` that
  outlives every run; a target that looks like a file (``data.db``) links to a file in it;
- ``host``: to the host path;
- ``text``: a file with the content is written under the lakeport home and linked.

A path the app folder already holds as a real file or folder is used as it is (with a
warning), and a target outside the working folder cannot be mounted without a container: the
app finds the volume's folder in ``LAKEPORT_VOLUME_<NAME>`` (warned). Each volume's folder is
also in ``LAKEPORT_VOLUME_<NAME>`` (``-`` → ``_``, upper case).
"""

from __future__ import annotations

import base64
import posixpath
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from lakeport.apps.dockerfile import image_workdir
from lakeport.home import lakeport_home

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest
    from lakeport.apps.manifest_system import Volume


@dataclass
class PreparedVolumes:
    """What the app's process gets: variables to add and warnings to print."""

    environment: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def looks_like_a_file(target: str) -> bool:
    """``data.db`` does, ``data``, ``.cache`` and ``store.d/`` (a trailing ``/``) do not."""
    return not target.endswith("/") and bool(PurePosixPath(target).suffix)


def variable_name(volume: str) -> str:
    return "LAKEPORT_VOLUME_" + volume.upper().replace("-", "_").replace(".", "_")


def relative_target(target: str, workdir: str) -> str | None:
    """The target as a path inside the app folder, or None when it lies outside it."""
    absolute = posixpath.normpath(posixpath.join(workdir, target))
    relative = posixpath.relpath(absolute, workdir)
    return None if relative == ".." or relative.startswith("../") or relative == "." \
        else relative


def prepare_volumes(manifest: Manifest, home: Path | None = None) -> PreparedVolumes:
    """Create each volume's storage and link its target into the app folder."""
    prepared = PreparedVolumes()
    folder = Path(manifest.folder).resolve()
    workdir, _ = image_workdir(folder)
    storage = (home or lakeport_home()) / "apps" / manifest.name / "volumes"
    for volume in manifest.volumes:
        source = _source(volume, storage)
        if source is None:
            continue
        prepared.environment[variable_name(volume.name)] = str(source)
        relative = relative_target(volume.target, workdir)
        if relative is None:
            prepared.warnings.append(
                f"volume {volume.name}: target {volume.target} is outside the app's working "
                f"folder {workdir}; without a container the app finds it in "
                f"${variable_name(volume.name)} ({source})")
            continue
        link = folder / relative
        if volume.type == "persistent" and looks_like_a_file(volume.target):
            source = source / posixpath.basename(relative)
        _link(link, source, volume.name, prepared)
    return prepared


def _source(volume: Volume, storage: Path) -> Path | None:
    """Where the volume's data is on this machine (created when lakeport owns it)."""
    if volume.type == "persistent":
        path = storage / volume.name
        path.mkdir(parents=True, exist_ok=True)
        return path
    if volume.type == "host":
        return Path(volume.host.source) if volume.host is not None else None
    if volume.text is None:
        return None
    text = volume.text
    content = base64.b64decode(text.data) if text.base64 else text.data.encode(text.encoding)
    path = storage / volume.name / PurePosixPath(volume.target).name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _link(link: Path, source: Path, name: str, prepared: PreparedVolumes) -> None:
    if link.is_symlink():
        if link.resolve() == source.resolve():
            return
        link.unlink()
    elif link.exists():
        prepared.warnings.append(
            f"volume {name}: {link} already exists in the app folder and is used as it is "
            f"(remove it to keep the data in {source})")
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(source, target_is_directory=source.is_dir())


__all__ = ["PreparedVolumes", "looks_like_a_file", "prepare_volumes", "relative_target"]
