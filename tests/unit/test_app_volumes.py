"""An app's volumes under ``lakeport app run``: persistent data under the lakeport home,
linked where the app looks for it, kept across runs."""

from __future__ import annotations

from pathlib import Path

from lakeport.apps.manifest import load_manifest
from lakeport.apps.volumes import prepare_volumes

MANIFEST = """\
spec_version: 5.0.0
type: docker
name: keeper
title: Keeper
description: keeps data
version: 1.0.0
defaults:
  system:
    volumes:
{volumes}
"""


def app(tmp_path: Path, volumes: str, workdir: str | None = "/opt/kelvin/app") -> Path:
    folder = tmp_path / "keeper"
    folder.mkdir()
    (folder / "app.yaml").write_text(MANIFEST.format(volumes=volumes))
    (folder / "main.py").write_text("")
    if workdir is not None:
        (folder / "Dockerfile").write_text(f"FROM python:3.11-slim\nWORKDIR {workdir}\n")
    return folder


def test_a_file_target_in_the_working_folder_lives_under_the_home(tmp_path: Path) -> None:
    folder = app(tmp_path, "      - name: data\n        target: data.db\n"
                           "        type: persistent\n")
    home = tmp_path / "home"
    prepared = prepare_volumes(load_manifest(folder), home)
    stored = home / "apps" / "keeper" / "volumes" / "data"
    assert prepared.environment == {"LAKEPORT_VOLUME_DATA": str(stored)}
    assert prepared.warnings == []
    (folder / "data.db").write_text("rows")  # what the app writes where it expects it
    assert (stored / "data.db").read_text() == "rows"

    (folder / "data.db").unlink()  # a new checkout of the app: the data is still there
    prepare_volumes(load_manifest(folder), home)
    assert (folder / "data.db").read_text() == "rows"


def test_an_absolute_target_under_the_workdir_and_a_folder_target(tmp_path: Path) -> None:
    folder = app(tmp_path, "      - name: cache\n        target: /opt/kelvin/app/cache\n"
                           "        type: persistent\n")
    home = tmp_path / "home"
    prepare_volumes(load_manifest(folder), home)
    assert (folder / "cache").is_symlink() and (folder / "cache").is_dir()
    (folder / "cache" / "x").write_text("1")
    assert (home / "apps" / "keeper" / "volumes" / "cache" / "x").read_text() == "1"


def test_a_target_outside_the_working_folder_is_a_warning_and_a_variable(
        tmp_path: Path) -> None:
    folder = app(tmp_path, "      - name: shared\n        target: /srv/shared\n"
                           "        type: persistent\n", workdir=None)
    prepared = prepare_volumes(load_manifest(folder), tmp_path / "home")
    (warning,) = prepared.warnings
    assert "shared" in warning and "/srv/shared" in warning and "LAKEPORT_VOLUME_SHARED" in warning
    assert not (folder / "srv").exists()


def test_a_real_file_already_in_the_app_folder_is_kept_with_a_warning(tmp_path: Path) -> None:
    folder = app(tmp_path, "      - name: data\n        target: data.db\n"
                           "        type: persistent\n")
    (folder / "data.db").write_text("mine")
    prepared = prepare_volumes(load_manifest(folder), tmp_path / "home")
    assert (folder / "data.db").read_text() == "mine" and not (folder / "data.db").is_symlink()
    assert "already exists" in prepared.warnings[0]


def test_host_and_text_volumes(tmp_path: Path) -> None:
    host = tmp_path / "serial"
    host.mkdir()
    folder = app(tmp_path, f"      - name: port\n        target: dev\n        type: host\n"
                           f"        host:\n          source: {host}\n"
                           "      - name: conf\n        target: conf/app.ini\n"
                           "        type: text\n        text:\n          data: 'a=1'\n")
    prepare_volumes(load_manifest(folder), tmp_path / "home")
    assert (folder / "dev").resolve() == host.resolve()
    assert (folder / "conf" / "app.ini").read_text() == "a=1"
