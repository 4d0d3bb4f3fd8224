"""The exporter app template runs lakeport's exporter runtime, and its configuration schema
documents every option of :class:`ExportConfig` with the runtime's types, limits and defaults."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from lakeport.apps.manifest import load_manifest, schema_problems
from lakeport.apps.scaffold import create_app
from lakeport.errors import Invalid
from lakeport.export.config import ExportConfig

APP_CHOSEN = {"to", "topics", "name"}  # defaults the app gives: its output folder, input, name
NOT_OPTIONS = {"streams_url"}  # the app's engine (LAKEPORT_STREAMS), not a configuration option


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_app("plant-export", "exporter", tmp_path_factory.mktemp("apps"))


@pytest.fixture(scope="module")
def schema(app: Path) -> dict[str, Any]:
    found = load_manifest(app).configuration_schema()
    assert found is not None
    return found


@pytest.fixture(scope="module")
def main(app: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("plant_export_main", app / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def model_types(spec: dict[str, Any]) -> set[str]:
    if "anyOf" in spec:
        return {t for option in spec["anyOf"] for t in model_types(option)}
    return {spec["type"]}


def model_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The constraints of a model field (those of its non-null branch for ``X | None``)."""
    for option in spec.get("anyOf", []):
        if option.get("type") != "null":
            return {**option, **{k: v for k, v in spec.items() if k != "anyOf"}}
    return spec


def test_every_option_is_documented(schema: dict[str, Any]) -> None:
    assert set(schema["properties"]) == set(ExportConfig.model_fields) - NOT_OPTIONS
    assert schema["additionalProperties"] is False
    for option, spec in schema["properties"].items():
        assert {"type", "title", "description", "default"} <= set(spec), option
        assert len(spec["description"]) > 20, option


def test_types_and_limits_are_the_runtime_s(schema: dict[str, Any]) -> None:
    model = ExportConfig.model_json_schema()["properties"]
    for option, spec in schema["properties"].items():
        types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        assert model_types(model[option]) <= set(types), option
        expected = model_spec(model[option])
        for limit in ("exclusiveMinimum", "minimum", "minItems", "minLength", "enum"):
            assert spec.get(limit) == expected.get(limit), (option, limit)


def test_schema_defaults_are_the_runtime_defaults(schema: dict[str, Any], main: ModuleType,
                                                  tmp_path: Path) -> None:
    defaults = {option: spec["default"] for option, spec in schema["properties"].items()}
    config = main.export_config(defaults, "plant-export", "memory://", tmp_path)
    runtime = ExportConfig(topics=["asset-data"], to="file:///lake")
    for option in set(ExportConfig.model_fields) - APP_CHOSEN - NOT_OPTIONS:
        assert getattr(config, option) == getattr(runtime, option), option
    assert (config.to, config.topics, config.name) == \
        ((tmp_path / "output").resolve().as_uri(), ["asset-data"], "plant-export")


def test_the_manifest_defaults_validate_and_mean_the_schema_defaults(
        app: Path, schema: dict[str, Any], main: ModuleType) -> None:
    manifest = load_manifest(app)
    configuration = manifest.defaults.configuration
    assert schema_problems(schema, configuration, "configuration") == []
    assert set(configuration) == set(schema["properties"])
    defaults = {option: spec["default"] for option, spec in schema["properties"].items()}
    assert main.export_config(configuration, "x", "memory://", app) == \
        main.export_config(defaults, "x", "memory://", app)


@pytest.mark.parametrize(("option", "value", "parsed"), [
    ("max_delay", 0.3, 0.3), ("max_delay", "500ms", 0.5), ("max_delay", "1.5h", 5400),
    ("until_idle", "30s", 30), ("retry_initial", "250ms", 0.25), ("retry_max", "2m", 120),
    ("batch_bytes", "128MB", 128 << 20), ("batch_bytes", "1GiB", 1 << 30),
    ("batch_bytes", 4096, 4096), ("status_interval", 0.5, 0.5),
])
def test_what_the_schema_accepts_the_runtime_reads_alike(
        schema: dict[str, Any], main: ModuleType, tmp_path: Path, option: str, value: Any,
        parsed: Any) -> None:
    assert schema_problems(schema, {option: value}, "configuration") == []
    config = main.export_config({option: value}, "x", "memory://", tmp_path)
    assert getattr(config, option) == parsed


@pytest.mark.parametrize(("option", "value"), [
    ("max_delay", "soon"), ("max_delay", 0), ("batch_rows", 0), ("batch_rows", 1.5),
    ("batch_bytes", "lots"), ("format", "avro"), ("topics", []), ("topics", ["a b"]),
    ("topics", ["x", "x"]), ("topics", [5]), ("to", ""), ("name", "my exporter"),
    ("retry_max", -1), ("compression", "zstd"),
])
def test_what_the_runtime_refuses_the_schema_refuses(
        schema: dict[str, Any], main: ModuleType, tmp_path: Path, option: str,
        value: Any) -> None:
    assert schema_problems(schema, {option: value}, "configuration") != []
    with pytest.raises(Invalid):
        main.export_config({option: value}, "x", "memory://", tmp_path)
