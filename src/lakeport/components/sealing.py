"""Parameters whose keys start with ``#`` sealed at rest.

Where lakeport keeps a component's configuration (a ``component`` task's ``config.json`` on
the server), each string value under a ``#`` key, at any depth, is encrypted with Fernet
(AES-128-CBC with an HMAC) under a key kept in a secret store of its own
(``<home>/sealing/secrets.json``, never reachable by a ``<% secrets.NAME %>`` reference), and
opened only to hand the configuration to the run. A sealed value reads
``LAKEPORT::SEALED::<token>``; sealing a sealed configuration changes nothing. Values are kept
exactly (the standard JSON module: integers of any size).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lakeport.apps.secrets import SecretStore
from lakeport.errors import Conflict, Invalid
from lakeport.home import lakeport_home

PREFIX = "LAKEPORT::SEALED::"
KEY_NAME = "component-key"


def key_store(home: Path | None = None) -> SecretStore:
    """The secret store of the sealing key: its own, under ``home`` (the lakeport home)."""
    return SecretStore((home or lakeport_home()) / "sealing")


def _fernet(secrets: SecretStore, create: bool) -> Any:
    from cryptography.fernet import Fernet

    if not secrets.exists(KEY_NAME):
        if not create:
            raise Invalid(f"no sealing key in {secrets.path}: sealed # parameters cannot be "
                          "opened (the key was removed, or this is another lakeport home)")
        try:
            secrets.create(KEY_NAME, Fernet.generate_key().decode())
        except Conflict:
            pass  # made at the same time by another request: that one is the key
    return Fernet(secrets.get(KEY_NAME).encode())


def _walk(value: Any, change: Any, secret: bool = False) -> Any:
    if isinstance(value, dict):
        return {key: _walk(item, change, secret or str(key).startswith("#"))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, change, secret) for item in value]
    return change(value) if secret and isinstance(value, str) else value


def seal(config: Any, secrets: SecretStore) -> Any:
    """``config`` with every ``#`` parameter's string value encrypted (the key is made on
    first use)."""
    fernet = _fernet(secrets, create=True)

    def close(text: str) -> str:
        return text if text.startswith(PREFIX) else PREFIX + fernet.encrypt(
            text.encode()).decode()

    return _walk(config, close)


def unseal(config: Any, secrets: SecretStore) -> Any:
    """``config`` with every sealed value opened; Invalid when one does not open with the
    store's key."""
    from cryptography.fernet import InvalidToken

    fernet = None

    def open_(text: str) -> str:
        nonlocal fernet
        if not text.startswith(PREFIX):
            return text
        fernet = fernet or _fernet(secrets, create=False)
        try:
            return fernet.decrypt(text[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise Invalid("a sealed # parameter does not open with this key (sealed "
                          "elsewhere, or the sealing key changed)") from None

    return _walk(config, open_)


def seal_file(data: bytes, secrets: SecretStore, where: str = "config.json") -> bytes:
    """A configuration file's bytes sealed; Invalid naming ``where`` when it is not a
    configuration (not JSON, nested too deeply, or not what the contract allows)."""
    from lakeport.components.config import parse_config

    try:
        config = json.loads(data)
        parse_config(config, where)
        return json.dumps(seal(config, secrets), indent=2).encode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"{where}: not JSON ({exc})") from None
    except RecursionError:
        raise Invalid(f"{where}: nested too deeply") from None


def unseal_file(data: bytes, secrets: SecretStore) -> bytes:
    """A sealed configuration file's bytes, opened."""
    return json.dumps(unseal(json.loads(data), secrets), indent=2).encode()


__all__ = ["KEY_NAME", "PREFIX", "key_store", "seal", "seal_file", "unseal", "unseal_file"]
