"""``lakeport app create``'s templates: names, files, placeholders, valid manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lakeport.apps.manifest import check_app, load_manifest
from lakeport.apps.scaffold import APP_TYPES, check_app_name, create_app, render_template, title_of
from lakeport.errors import Conflict, Invalid

FILES = {"app.yaml", "main.py", "requirements.txt", "Dockerfile", "README.md", "test_app.py",
         "schemas/configuration.json"}


@pytest.mark.parametrize("name", ["demo", "demo-exporter", "a1", "x" * 63, "9lives"])
def test_good_names(name: str) -> None:
    assert check_app_name(name) == name


@pytest.mark.parametrize("name", ["", "Demo", "demo_app", "-demo", "demo-", "x" * 64,
                                  "my app", "dé"])
def test_bad_names(name: str) -> None:
    with pytest.raises(Invalid, match="bad app name"):
        check_app_name(name)


def test_title_of() -> None:
    assert title_of("demo-exporter") == "Demo Exporter"


@pytest.mark.parametrize("app_type", APP_TYPES)
def test_every_type_renders_every_file_without_placeholders(app_type: str) -> None:
    files = render_template(app_type, "plant-feed")
    assert set(files) == FILES
    for path, text in files.items():
        assert "{{" not in text, path
    manifest = yaml.safe_load(files["app.yaml"])
    assert (manifest["type"], manifest["name"], manifest["title"]) == \
        (app_type, "plant-feed", "Plant Feed")
    assert 'ENTRYPOINT ["python", "main.py"]' in files["Dockerfile"]
    assert "FROM python:3.11-slim" in files["Dockerfile"]
    assert "plant-feed" in files["README.md"]
    schema = json.loads(files["schemas/configuration.json"])
    assert set(schema["properties"]) == set(manifest["defaults"]["configuration"])
    compile(files["main.py"], "main.py", "exec")
    compile(files["test_app.py"], "test_app.py", "exec")


def test_requirements_name_what_the_template_imports() -> None:
    assert "lakeport" in render_template("app", "a")["requirements.txt"]
    assert "lakeport" in render_template("importer", "a")["requirements.txt"]
    exporter = render_template("exporter", "a")["requirements.txt"]
    assert "lakeport" in exporter and "pyarrow" in exporter


def test_unknown_type() -> None:
    with pytest.raises(Invalid, match="bad app type 'cron': use one of app, importer"):
        render_template("cron", "a")


@pytest.mark.parametrize("app_type", APP_TYPES)
def test_created_apps_are_valid(tmp_path: Path, app_type: str) -> None:
    folder = create_app(f"my-{app_type}", app_type, tmp_path)
    assert folder == tmp_path / f"my-{app_type}"
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == FILES
    assert check_app(folder) == []
    manifest = load_manifest(folder)
    assert manifest.warnings == []  # every key is one the vendor's format reads
    assert manifest.validate_configuration(manifest.defaults.configuration) == []


def test_what_each_type_reads(tmp_path: Path) -> None:
    reads = {t: load_manifest(create_app(f"r-{t}", t, tmp_path)).subscriptions()
             for t in APP_TYPES}
    assert [(s.topic, s.datastreams) for s in reads["app"]] == [("asset-data", ("temperature",))]
    assert [(s.topic, s.data_types) for s in reads["exporter"]] == [
        ("asset-data", ("number", "string", "boolean", "object"))]
    assert [(s.topic, s.data_types) for s in reads["importer"]] == [
        ("control-changes", ("number",))]
    assert reads["docker"] == []


def test_create_refuses_a_non_empty_folder_and_accepts_an_empty_one(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(Conflict, match="busy: folder exists and is not empty"):
        create_app("busy", "app", tmp_path)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    (tmp_path / "fresh").mkdir()
    assert (create_app("fresh", "app", tmp_path) / "app.yaml").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(Conflict, match="exists and is not a folder"):
        create_app("file", "app", tmp_path)
