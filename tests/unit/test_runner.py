"""What ``lakeport app run`` prepares: the configuration layers and the app's environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakeport.apps.manifest import load_manifest
from lakeport.apps.runner import (
    app_environment,
    exit_code,
    load_configuration_file,
    merge_configuration,
    parse_set_options,
    parse_value,
    resolve_configuration,
    run_app_process,
)
from lakeport.apps.secrets import SecretStore
from lakeport.errors import Invalid, NotFound


def test_set_values_are_json_when_they_can_be() -> None:
    assert [parse_value(t) for t in ("500", "2.5", "true", "null", "[1, 2]", '{"a": 1}',
                                     "hello", "", '"quoted"')] == \
        [500, 2.5, True, None, [1, 2], {"a": 1}, "hello", "", "quoted"]


def test_dotted_set_keys_make_nested_objects() -> None:
    assert parse_set_options(["batch_rows=500", "sink.path=/data", "sink.retries=3",
                              "name=a=b"]) == \
        {"batch_rows": 500, "sink": {"path": "/data", "retries": 3}, "name": "a=b"}


@pytest.mark.parametrize("item", ["batch_rows", "=5", "a..b=1", "a.=1"])
def test_bad_set_options(item: str) -> None:
    with pytest.raises(Invalid, match=f"bad --set '{item}'"):
        parse_set_options([item])


def test_set_cannot_nest_under_a_value() -> None:
    with pytest.raises(Invalid, match="sink is already set to a value"):
        parse_set_options(["sink=1", "sink.path=/x"])


def test_layers_merge_nested_objects() -> None:
    merged = merge_configuration({"a": 1, "sink": {"path": "/a", "retries": 1}},
                                 {"sink": {"path": "/b"}}, {"b": 2})
    assert merged == {"a": 1, "b": 2, "sink": {"path": "/b", "retries": 1}}


def test_configuration_files(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"a": 1}')
    (tmp_path / "c.yaml").write_text("a: 2\nb: [x]\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    assert load_configuration_file(tmp_path / "c.json") == {"a": 1}
    assert load_configuration_file(tmp_path / "c.yaml") == {"a": 2, "b": ["x"]}
    assert load_configuration_file(tmp_path / "empty.yaml") == {}
    with pytest.raises(Invalid, match=r"list.yaml: must hold an object of options, not list"):
        load_configuration_file(tmp_path / "list.yaml")
    with pytest.raises(Invalid, match=r"bad.yaml line 2, column 1: "):
        load_configuration_file(tmp_path / "bad.yaml")
    with pytest.raises(NotFound, match=r"missing.json: no such file"):
        load_configuration_file(tmp_path / "missing.json")


MANIFEST = """\
spec_version: 5.0.0
type: docker
name: probe
version: 1.0.0
defaults:
  configuration: {port: 8080, tls: {enabled: false, cert: none}}
  system:
    environment_vars:
      - {name: TOKEN, value: "Bearer <% secrets.api-token %>"}
      - {name: RETRIES, value: 3}
      - {name: LAKEPORT_STREAMS, value: "memory://from-manifest"}
"""


def test_environment_of_the_app(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(MANIFEST)
    (tmp_path / "config.yaml").write_text("tls: {enabled: true}\n")
    manifest = load_manifest(tmp_path)
    configuration = resolve_configuration(manifest, tmp_path / "config.yaml", ["port=9000"])
    assert configuration == {"port": 9000, "tls": {"enabled": True, "cert": "none"}}
    store = SecretStore(tmp_path / "home")
    store.create("api-token", "abc")
    env = app_environment(manifest, configuration, "file:///streams", store,
                          base={"PATH": "/bin", "TOKEN": "old"})
    assert env == {
        "PATH": "/bin",
        "PYTHONUNBUFFERED": "1",
        "TOKEN": "Bearer abc",
        "RETRIES": "3",
        "LAKEPORT_APP_DIR": str(tmp_path.resolve()),
        "LAKEPORT_APP_CONFIGURATION": json.dumps(configuration),
        "LAKEPORT_STREAMS": "file:///streams",  # the runner's URL wins
    }


def test_exit_codes() -> None:
    assert [exit_code(code) for code in (0, 1, 3, -9, -15)] == [0, 1, 3, 137, 143]


def test_run_needs_main_py(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"main.py: no such file"):
        run_app_process(tmp_path, {})
