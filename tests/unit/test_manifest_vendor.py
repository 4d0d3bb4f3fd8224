"""app.yaml as the vendor's v5 model reads it: every key it reads, with the same defaults, and
the same verdict as the vendor's own parser (kelvin-python-sdk) on the files of
tests/fixtures/kelvin_manifests/."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kelvin_sdk import vendor_verdicts
from lakeport.apps.manifest import Manifest, inspect_app, load_manifest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kelvin_manifests"
TYPES = ("app", "importer", "exporter", "docker")


def template(kind: str) -> dict[str, Any]:
    """The app.yaml the vendor's ``app create`` template gives for ``kind``."""
    return yaml.safe_load((FIXTURES / "templates" / f"{kind}.yaml").read_text(encoding="utf-8"))


def fixture_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (FIXTURES / folder).glob("*.yaml"))


# Each case: keys (dotted paths) the vendor reads for a type, with a value, added to the
# type's template. Cases that need a second key to mean something carry both.
COMMON: list[dict[str, Any]] = [
    {"category": "monitoring"},
    {"api_permissions": ["assets.read", "datastreams.read"]},
    {"flags.enable_runtime_update.configuration": True},
    {"ui_schemas.configuration": "ui_schemas/settings.json"},
    {"defaults.configuration": {"window": 10, "nested": {"on": True}}},
    {"defaults.system": {"privileged": True,
                         "environment_vars": [{"name": "LOG_LEVEL", "value": "DEBUG"}]}},
]
WITH_CUSTOM_ACTIONS: list[dict[str, Any]] = [
    {"custom_actions.inputs": [{"type": "restart"}]},
    {"custom_actions.outputs": [{"type": "open valve"}]},
    {"custom_actions.inputs": [{"type": "restart"}],
     "ui_schemas.custom_actions": {"restart": "ui_schemas/restart.json"}},
    {"data_quality.inputs": [{"name": "kelvin_stale_data", "data_type": "boolean"}]},
    {"data_quality.outputs": [{"name": "in_range", "data_type": "boolean",
                               "type": "asset-datastream", "data_streams": ["temperature"]}]},
]
IO_TYPES: list[dict[str, Any]] = [
    {"flags.resources_required": True},
    {"ui_schemas.io_configuration": {"default": "ui_schemas/io_default.json"}},
]
CASES: dict[str, list[dict[str, Any]]] = {
    "app": [*COMMON, *WITH_CUSTOM_ACTIONS,
            {"data_streams.inputs": [{"name": "camera", "data_type": "camera-image"}]},
            {"data_streams.outputs": [{"name": "card", "data_type": "dynacard", "unit": "kg"}]},
            {"control_changes.inputs": [{"name": "mode", "data_type": "string"}]},
            {"control_changes.outputs": [{"name": "speed", "data_type": "number",
                                          "unit": "rpm"}]},
            {"parameters": [{"name": "limit", "data_type": "number"},
                            {"name": "label", "data_type": "string"}],
             "defaults.parameters": {"limit": 7.5, "label": "eco"}},
            {"flags.enable_runtime_update.parameters": False},
            {"flags.enable_runtime_update.resource_properties": False},
            {"ui_schemas.parameters": "ui_schemas/limits.json"},
            {"defaults.datastream_mapping": [{"app": "motor_temperature",
                                              "datastream": "temperature_pv"}]},
            {"data_tags.inputs": ["maintenance"]},
            {"data_tags.outputs": ["anomaly"]},
            {"recommendations.outputs": [{"type": "lower_speed"}, {"type": "Inspect Pump"}]}],
    "importer": [*COMMON, *WITH_CUSTOM_ACTIONS, *IO_TYPES,
                 {"importer_io": [{"name": "images", "data_types": ["camera-image"],
                                   "control": True}, {"name": "default"}]}],
    "exporter": [*COMMON, *WITH_CUSTOM_ACTIONS, *IO_TYPES,
                 {"exporter_io": [{"name": "cards", "data_types": ["dynacard", "number"]}]}],
    "docker": COMMON,
}
KEY_CASES = [(kind, keys) for kind in TYPES for keys in CASES[kind]]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    return f"{case[0]}:{list(case[1])[-1]}"


def with_keys(kind: str, keys: dict[str, Any]) -> dict[str, Any]:
    document = template(kind)
    for path, value in keys.items():
        *parents, last = path.split(".")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
    return document


def value_at(manifest: Manifest, path: str) -> Any:
    value: Any = manifest.model_dump(mode="json")
    for part in path.split("."):
        value = value[part]
    return value


def reads_like(theirs: Any, ours: Any, where: str = "") -> list[str]:
    """Where ``ours`` differs from ``theirs`` (keys only ``ours`` has do not count)."""
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{where}: {ours!r} is not a mapping"]
        return [difference for key, value in theirs.items()
                for difference in (reads_like(value, ours[key], f"{where}.{key}")
                                   if key in ours else [f"{where}.{key}: missing"])]
    if isinstance(theirs, list):
        if not isinstance(ours, list) or len(ours) != len(theirs):
            return [f"{where}: {ours!r} is not {theirs!r}"]
        return [difference for index, (a, b) in enumerate(zip(theirs, ours, strict=True))
                for difference in reads_like(a, b, f"{where}[{index}]")]
    return [] if theirs == ours and type(theirs) is type(ours) else [
        f"{where}: {ours!r} is not {theirs!r}"]


def write(folder: Path, name: str, document: dict[str, Any]) -> Path:
    file = folder / f"{name}.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return file


# -- every key the vendor reads, for each type ------------------------------------------------
@pytest.mark.parametrize("kind", TYPES)
def test_the_vendor_template_is_valid_without_warnings(kind: str):
    manifest = load_manifest(FIXTURES / "templates" / f"{kind}.yaml")
    assert (manifest.type, manifest.warnings) == (kind, [])


@pytest.mark.parametrize("case", KEY_CASES, ids=case_id)
def test_every_key_the_vendor_reads_is_read(case: tuple[str, dict[str, Any]], tmp_path: Path):
    kind, keys = case
    manifest = load_manifest(write(tmp_path, "app", with_keys(kind, keys)))
    assert manifest.warnings == []
    for path, value in keys.items():
        assert reads_like(value, value_at(manifest, path), path) == []


@pytest.mark.parametrize(("kind", "flags"), [
    ("app", {"configuration": False, "parameters": True, "resource_properties": True}),
    ("importer", {"configuration": False}),
    ("exporter", {"configuration": False}),
    ("docker", {"configuration": False}),
])
def test_runtime_update_defaults_are_the_vendors(kind: str, flags: dict[str, bool],
                                                 tmp_path: Path):
    document = template(kind)
    document.pop("flags")
    manifest = load_manifest(write(tmp_path, "app", document))
    assert manifest.resolved()["flags"]["enable_runtime_update"] == flags


def test_io_data_types_default_to_the_primitive_ones(tmp_path: Path):
    document = {**template("importer"), "importer_io": [{"name": "default"}]}
    manifest = load_manifest(write(tmp_path, "app", document))
    assert manifest.importer_io[0].data_types == ["number", "string", "boolean"]
    assert manifest.importer_io[0].control is False


# -- what the vendor ignores is a warning that names it; what it refuses an error --------------
def test_keys_the_vendor_ignores_are_warnings_naming_them():
    found = inspect_app(FIXTURES / "accepted" / "ignored-keys.yaml", check_secrets=False)
    assert found.problems == []
    ignored = "(the vendor's format ignores it)"
    assert set(found.warnings) >= {
        f"colour: not used {ignored}",
        f"data_streams: not used by type exporter {ignored}",
        f"exporter_io[0].control: not used by type exporter {ignored}",
        f"flags.enable_runtime_update.io: not used {ignored}",
        f"flags.enable_runtime_update.parameters: not used by type exporter {ignored}",
        f"exporter_io[0].datatypes: not used {ignored} (did you mean data_types?)",
    }


@pytest.mark.parametrize("path", fixture_files("lenient"), ids=lambda p: p.stem)
def test_lenient_files_load_with_a_warning(path: Path):
    assert load_manifest(path).warnings


@pytest.mark.parametrize("path", fixture_files("old"), ids=lambda p: p.stem)
def test_the_old_format_is_one_line(path: Path):
    found = inspect_app(path, check_secrets=False)
    assert len(found.problems) == 1
    assert "the old app.yaml format; lakeport reads 5.0.0" in found.problems[0]


# -- the same verdict as the vendor's own parser ------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The key cases as files, for the vendor to read."""
    folder = tmp_path_factory.mktemp("vendor-keys")
    return [write(folder, f"{index:02d}-{case_id(case).replace(':', '-')}",
                  with_keys(*case)) for index, case in enumerate(KEY_CASES)]


COMPARED = fixture_files("templates", "accepted", "refused")


@pytest.fixture(scope="module")
def verdicts(vendor_python: Path, generated: list[Path]) -> dict[Path, dict[str, Any]]:
    files = [*COMPARED, *generated, *fixture_files("lenient", "old")]
    return vendor_verdicts(vendor_python, files)


@pytest.mark.slow
def test_lakeport_accepts_exactly_what_the_vendor_accepts(
        verdicts: dict[Path, dict[str, Any]], generated: list[Path]):
    assert {FIXTURES / "refused" / f"{name}.yaml" for name in (
        "bad-name", "bad-version", "missing-version")} <= set(COMPARED)
    disagreements = []
    for path in [*COMPARED, *generated]:
        verdict = verdicts[path]
        try:
            manifest = load_manifest(path)
        except Exception as exc:
            if verdict["accepted"]:
                disagreements.append(f"{path.name}: the vendor accepts it, lakeport: {exc}")
            continue
        if not verdict["accepted"]:
            disagreements.append(f"{path.name}: lakeport accepts it, the vendor: "
                                 f"{verdict['error']}")
            continue
        for difference in reads_like(verdict["reading"], manifest.model_dump(mode="json")):
            disagreements.append(f"{path.name}: {difference}")
    assert disagreements == []
    assert sum(not verdicts[p]["accepted"] for p in COMPARED) == len(fixture_files("refused"))


@pytest.mark.slow
def test_what_lakeport_accepts_with_warnings_or_refuses_on_purpose(
        verdicts: dict[Path, dict[str, Any]]):
    for path in fixture_files("lenient"):
        assert not verdicts[path]["accepted"], path.name  # the vendor's tools refuse it
        assert load_manifest(path).warnings, path.name
    for path in fixture_files("old"):
        assert verdicts[path]["accepted"], path.name  # the vendor still reads version 4
        assert len(inspect_app(path, check_secrets=False).problems) == 1
