"""The local secret store: file mode 0600, atomic rewrites, values never shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lakeport.apps.secrets import (
    SecretStore,
    mask_secrets,
    resolve_secrets,
    secret_refs,
)
from lakeport.errors import Conflict, Invalid, NotFound

VALUE = "s3cr3t-Value$with\\odd chars"


@pytest.fixture
def store(tmp_path: Path) -> SecretStore:
    return SecretStore(tmp_path / "home")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_get_update_delete(store: SecretStore):
    store.create("azure-key", VALUE)
    store.create("db-password", "pw")
    assert store.get("azure-key") == VALUE
    assert store.names() == ["azure-key", "db-password"]
    assert "azure-key" in store and "missing" not in store
    store.update("azure-key", "rotated")
    assert store.get("azure-key") == "rotated"
    store.delete("azure-key")
    assert store.names() == ["db-password"]


def test_the_default_store_lives_in_the_lakeport_home(lakeport_home: Path):
    SecretStore().create("token", "t")
    assert (lakeport_home / "secrets.json").is_file()
    assert SecretStore(lakeport_home).get("token") == "t"


def test_the_file_is_readable_by_its_owner_only(store: SecretStore):
    old_umask = os.umask(0)  # the most permissive umask must not widen the mode
    try:
        store.create("azure-key", VALUE)
        assert mode_of(store.path) == 0o600
        store.update("azure-key", "other")
        assert mode_of(store.path) == 0o600
        store.delete("azure-key")
        assert mode_of(store.path) == 0o600
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        "secrets.json", "secrets.json.lock"]  # no temporary file left behind


def test_a_store_made_readable_by_others_is_tightened_on_the_next_write(store: SecretStore):
    store.create("a", "1")
    store.path.chmod(0o644)
    store.create("b", "2")
    assert mode_of(store.path) == 0o600


def test_conflicts_and_missing_secrets_name_the_command(store: SecretStore):
    store.create("azure-key", VALUE)
    with pytest.raises(Conflict, match="secret 'azure-key' already exists: change it with "
                                       "lakeport secret update azure-key"):
        store.create("azure-key", "again")
    message = ("secret 'nope' does not exist: create it with lakeport secret create nope "
               "--value ...")
    with pytest.raises(NotFound) as caught:
        store.get("nope")
    assert str(caught.value) == message
    with pytest.raises(NotFound, match="nope"):
        store.update("nope", "x")
    with pytest.raises(NotFound, match="nope"):
        store.delete("nope")


@pytest.mark.parametrize("name", ["Azure-Key", "azure_key", "-key", "key-", "", "a b",
                                  "a" * 254])
def test_secret_names_are_dns_like(store: SecretStore, name: str):
    with pytest.raises(Invalid, match="secret name"):
        store.create(name, "v")
    assert store.names() == []


def test_an_empty_value_is_refused(store: SecretStore):
    with pytest.raises(Invalid, match="must not be empty"):
        store.create("key", "")


def test_values_never_appear_in_repr_or_errors(store: SecretStore):
    store.create("azure-key", VALUE)
    assert VALUE not in repr(store)
    with pytest.raises(Conflict) as conflict:
        store.create("azure-key", VALUE)
    assert VALUE not in str(conflict.value)
    store.path.write_text('{"azure-key": "' + VALUE.replace("\\", "\\\\") + '", oops')
    with pytest.raises(Invalid) as broken:
        store.names()
    assert VALUE not in str(broken.value)
    assert "not valid JSON" in str(broken.value) and str(store.path) in str(broken.value)


def test_a_store_that_is_not_an_object_of_strings(store: SecretStore):
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"a": 1}')
    with pytest.raises(Invalid, match="object of names to string values"):
        store.get("a")


def test_secret_refs_and_resolution(store: SecretStore):
    text = "user=<% secrets.db-user %> pw=<%secrets.db-password%> again=<% secrets.db-user %>"
    assert secret_refs(text) == ["db-user", "db-password"]
    assert secret_refs("no references") == []
    store.create("db-user", "admin")
    store.create("db-password", VALUE)
    assert resolve_secrets(text, store) == f"user=admin pw={VALUE} again=admin"
    assert resolve_secrets("plain", store) == "plain"
    assert mask_secrets(text) == "user=*** pw=*** again=***"


def test_resolving_a_missing_or_badly_named_secret(store: SecretStore):
    with pytest.raises(NotFound, match="lakeport secret create azure-key"):
        resolve_secrets("<% secrets.azure-key %>", store)
    with pytest.raises(Invalid, match="secret name 'Azure_Key' is not valid"):
        resolve_secrets("<% secrets.Azure_Key %>", store)
