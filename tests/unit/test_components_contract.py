"""The pieces of the component contract that need no storage: file queries, usage, state
versions, secret masking, configuration rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeport.components import StateStore, StoredFile, parse_config, parse_query, read_usage
from lakeport.components.config import masker, secret_values
from lakeport.components.files import same_chain
from lakeport.components.state import read_out_state
from lakeport.errors import Conflict, Invalid

ZIP = StoredFile(1, "fooBar.zip", ["docker-demo", "toprocess"])
CSV = StoredFile(2, "data.csv", ["toprocess", "downloaded"])


@pytest.mark.parametrize(("query", "matches"), [
    ("name:.zip", [1]),
    ("tags: toprocess AND NOT tags: downloaded", [1]),
    ("tags:downloaded OR name:foo", [1, 2]),
    ("NOT (name:.zip OR tags:x)", [2]),
    ('name:"data" tags:toprocess', [2]),
    ("tags:docker-demo AND tags:downloaded", []),
])
def test_file_queries(query: str, matches: list[int]) -> None:
    predicate = parse_query(query)
    assert [f.id for f in (ZIP, CSV) if predicate(f)] == matches


@pytest.mark.parametrize("query", ["name:a AND", "(name:a", "name:a )", "tags:x OR OR"])
def test_bad_file_queries_are_named(query: str) -> None:
    with pytest.raises(Invalid, match="file query"):
        parse_query(query)


def test_run_id_chains() -> None:
    belongs = same_chain("100.7")
    assert [belongs(r) for r in ("100", "100.3", "100.7.1", "1000", "200", None)] == [
        True, True, True, False, False, False]
    assert same_chain("55")("55.1") and not same_chain("55")("56")


def test_usage_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "usage.json"
    assert read_usage(path) == []
    path.write_text('[{"metric": "API calls", "value": 150}, {"metric": "s", "value": 0.5}]')
    assert len(read_usage(path)) == 2
    for bad in ('[{"metric": "x"}]', '[{"metric": 1, "value": 1}]',
                '[{"metric": "x", "value": true}]', '["x"]', '{}'):
        path.write_text(bad)
        with pytest.raises(Invalid, match=r"^out/usage\.json"):
            read_usage(path)


def test_state_versions_compare_and_swap(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    first = store.read("c")
    assert (first.state, first.version) == ({}, 0)
    assert store.write("c", {"a": 1}, 0) == 1
    with pytest.raises(Conflict, match="changed by another run"):
        store.write("c", {"a": 2}, 0)
    assert store.read("c").state == {"a": 1}
    store.write("c", None, 1)
    assert store.read("c") == type(first)({}, 2)


def test_out_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert read_out_state(path) is None
    path.write_text("  ")
    assert read_out_state(path) is None
    path.write_text('{"x": 1}')
    assert read_out_state(path) == {"x": 1}
    path.write_text("[1]")
    with pytest.raises(Invalid, match="JSON object expected"):
        read_out_state(path)


def test_secret_values_are_masked_at_any_depth() -> None:
    params = {"#password": "p4ss", "db": {"#key": "k3y-long", "user": "ann"},
              "list": [{"#token": "t0k"}]}
    mask = masker(secret_values(params))
    assert mask("p4ss k3y-long t0k ann") == "*** *** *** ann"


def test_configuration_rows() -> None:
    config = parse_config({"parameters": {"a": 1, "b": 1}, "rows": [
        {"id": "r1", "parameters": {"b": 2},
         "storage": {"input": {"tables": [{"source": "in.c-a.t"}]}}}]})
    row = config.for_row("r1")
    assert row.parameters == {"a": 1, "b": 2}
    assert row.storage.input.tables[0].source == "in.c-a.t"
    assert "rows" not in row.contract_json()
    with pytest.raises(Invalid, match="no row 'r9'"):
        config.for_row("r9")


def test_the_contract_sample_configuration_parses_except_its_typo() -> None:
    sample = {"storage": {"input": {"tables": [
        {"source": "in.c-main.test", "destination": "source.csv", "limit": 50, "columns": [],
         "where_values": [], "where_operator": "eq"}], "files": []},
        "output": {"tables": [{"source": "destination.csv", "destination": "out.c-main.test",
                               "incremental": False, "colummns": []}], "files": []}},
        "parameters": {"multiplier": 2}, "image_parameters": [], "action": "run"}
    with pytest.raises(Invalid, match=r"storage\.output\.tables\[0\]\.colummns: unknown key"):
        parse_config(sample)
    del sample["storage"]["output"]["tables"][0]["colummns"]
    assert parse_config(sample).storage.input.tables[0].limit == 50
