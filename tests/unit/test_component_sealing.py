"""``#`` parameters sealed at rest: every string under a ``#`` key is encrypted and nothing
else changes; opening gives the configuration back; sealing twice changes nothing; a value
sealed under another key is refused with one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeport.apps.secrets import SecretStore
from lakeport.components.sealing import (
    KEY_NAME,
    PREFIX,
    key_store,
    seal,
    seal_file,
    unseal,
    unseal_file,
)
from lakeport.errors import Invalid

keys = st.one_of(st.text(max_size=8), st.text(max_size=8).map(lambda k: "#" + k))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20)


def secret_strings(value: Any, secret: bool = False) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in secret_strings(v, secret or k.startswith("#"))]
    if isinstance(value, list):
        return [s for v in value for s in secret_strings(v, secret)]
    return [value] if secret and isinstance(value, str) else []


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(keys, json_values, max_size=5))
def test_sealing_encrypts_exactly_the_hash_strings_and_opens_back(
        config: dict[str, Any], tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    sealed = seal(config, store)
    assert all(text.startswith(PREFIX) for text in secret_strings(sealed))
    assert len(secret_strings(sealed)) == len(secret_strings(config))
    assert seal(sealed, store) == sealed
    assert unseal(sealed, store) == config


def test_a_configuration_file_is_checked_sealed_and_opened(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    config = {"parameters": {"#token": "s3cr3t", "nested": {"#list": ["a", 1]}, "plain": "p"}}
    sealed = seal_file(json.dumps(config).encode(), store)
    assert b"s3cr3t" not in sealed and b'"plain": "p"' in sealed
    assert json.loads(sealed)["parameters"]["nested"]["#list"][1] == 1  # only strings
    assert json.loads(unseal_file(sealed, store)) == config
    assert KEY_NAME in store.names()
    with pytest.raises(Invalid, match=r"^config\.json: not JSON"):
        seal_file(b"{", store)
    with pytest.raises(Invalid, match=r"config\.json: colour: unknown key"):
        seal_file(b'{"colour": 1}', store)


def test_a_value_sealed_under_another_key_or_without_one_is_refused(tmp_path: Path) -> None:
    sealed = seal({"#token": "s3cr3t"}, SecretStore(tmp_path / "one"))
    with pytest.raises(Invalid, match="no sealing key in"):
        unseal(sealed, SecretStore(tmp_path / "two"))  # opening never makes a key
    seal({}, SecretStore(tmp_path / "two"))  # sealing does
    with pytest.raises(Invalid, match="does not open with this key"):
        unseal(sealed, SecretStore(tmp_path / "two"))
    assert unseal({"#plain": "x"}, SecretStore(tmp_path / "three")) == {"#plain": "x"}


def test_the_key_is_in_a_store_of_its_own(tmp_path: Path) -> None:
    """No ``<% secrets.NAME %>`` reference (which reads the home's secrets.json) reaches it."""
    seal_file(b'{"parameters": {"#a": "b"}}', key_store(tmp_path))
    assert KEY_NAME in key_store(tmp_path).names()
    assert KEY_NAME not in SecretStore(tmp_path).names()


def test_values_are_kept_exactly_and_deep_nesting_is_one_error(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    config = b'{"parameters": {"big": 18446744073709551617, "#t": "x", "f": 0.1}}'
    assert json.loads(unseal_file(seal_file(config, store), store)) == json.loads(config)
    deep = b'{"parameters": {"#n": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    with pytest.raises(Invalid, match=r"^config\.json: (nested too deeply|not JSON)"):
        seal_file(deep, store)
