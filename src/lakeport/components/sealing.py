"""Parameters whose keys start with ``#`` sealed at rest.

Where lakeport keeps a component's configuration (a ``component`` task's ``config.json`` on
the server), each string value under a ``#`` key, at any depth, is encrypted with Fernet
(AES-128-CBC with an HMAC) under a key kept in the secret store, and opened only to hand the
configuration to the run. A sealed value reads ``LAKEPORT::SEALED::<token>``; sealing a
sealed configuration changes nothing.
"""

from __future__ import annotations

from typing import Any

import orjson

from lakeport.apps.secrets import SecretStore
from lakeport.errors import Invalid

PREFIX = "LAKEPORT::SEALED::"
KEY_NAME = "lakeport-component-key"
"""The secret holding the key (created on first use)."""


def _fernet(secrets: SecretStore) -> Any:
    from cryptography.fernet import Fernet

    if not secrets.exists(KEY_NAME):
        secrets.create(KEY_NAME, Fernet.generate_key().decode())
    return Fernet(secrets.get(KEY_NAME).encode())


def _walk(value: Any, change: Any, secret: bool = False) -> Any:
    if isinstance(value, dict):
        return {key: _walk(item, change, secret or str(key).startswith("#"))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, change, secret) for item in value]
    return change(value) if secret and isinstance(value, str) else value


def seal(config: Any, secrets: SecretStore) -> Any:
    """``config`` with every ``#`` parameter's string value encrypted."""
    fernet = _fernet(secrets)

    def close(text: str) -> str:
        return text if text.startswith(PREFIX) else PREFIX + fernet.encrypt(
            text.encode()).decode()

    return _walk(config, close)


def unseal(config: Any, secrets: SecretStore) -> Any:
    """``config`` with every sealed value opened; Invalid when one does not open with the
    secret store's key."""
    from cryptography.fernet import InvalidToken

    fernet = _fernet(secrets)

    def open_(text: str) -> str:
        if not text.startswith(PREFIX):
            return text
        try:
            return fernet.decrypt(text[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise Invalid("a sealed # parameter does not open with this key (sealed "
                          "elsewhere, or the key in the secret store changed)") from None

    return _walk(config, open_)


def seal_file(data: bytes, secrets: SecretStore, where: str = "config.json") -> bytes:
    """A configuration file's bytes sealed; Invalid naming ``where`` when it is not a
    configuration (not JSON, or not what the contract allows)."""
    from lakeport.components.config import parse_config

    try:
        config = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"{where}: not JSON ({exc})") from None
    parse_config(config, where)
    return orjson.dumps(seal(config, secrets), option=orjson.OPT_INDENT_2)


def unseal_file(data: bytes, secrets: SecretStore) -> bytes:
    """A sealed configuration file's bytes, opened."""
    return orjson.dumps(unseal(orjson.loads(data), secrets), option=orjson.OPT_INDENT_2)


__all__ = ["KEY_NAME", "PREFIX", "seal", "seal_file", "unseal", "unseal_file"]
