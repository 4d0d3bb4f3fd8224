"""Secrets of rules and bridges: broker passwords and webhook header values.

A value given literally over the API goes to the server's secret store
(:class:`lakeport.apps.secrets.SecretStore`, the lakeport home of ``lakeport serve``) under a
name of the resource's own (``routing-rule-<name>-<digest>-<action number>-password``) and the row
keeps only its ``<% secrets.NAME %>`` reference; the rule's actions and the bridge resolve
the reference when they connect. Answers show every such field as ``***``; sending ``***``
back (a record read, changed and put again) keeps the stored value. A reference to any other
secret is refused: the server's secrets are not the users'. Deleting the resource removes its
secrets.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lakeport.apps.secrets import MASK, SecretStore, secret_refs
from lakeport.errors import Invalid, NotFound

_SLUG = re.compile(r"[^a-z0-9]+")
Secrets = dict[str, str]
"""Secret name -> value, to store."""


def prefix_of(kind: str, name: str) -> str:
    """The start of every secret name of the rule or bridge ``name``."""
    slug = _SLUG.sub("-", name.lower()).strip("-")[:60] or "x"
    return f"routing-{kind}-{slug}-{_digest(name)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _ref(name: str) -> str:
    return f"<% secrets.{name} %>"


def _hide(value: str | None, previous: str | None, prefix: str, slot: str, where: str,
          found: Secrets) -> str | None:
    """The stored form of one secret field: a reference to the resource's own secret."""
    if value is None:
        return None
    if value == MASK:
        if previous is None or "<%" not in previous:
            raise Invalid(f"{where}: '***' keeps the stored value, and there is none: give "
                          "the value")
        return previous
    if "<%" in value:
        foreign = [n for n in secret_refs(value) if not n.startswith(prefix + "-")]
        if foreign or not secret_refs(value):
            raise Invalid(f"{where}: give the value itself; the server keeps it as a secret "
                          "(references to the server's secrets are not allowed)")
        return value
    name = f"{prefix}-{slot}"
    found[name] = value
    return _ref(name)


def _url_password(url: str, where: str) -> None:
    if urlsplit(url).password:
        raise Invalid(f"{where}: no password in the URL: give it as password")


def hide_rule(spec: dict[str, Any], previous: dict[str, Any] | None, prefix: str
              ) -> tuple[dict[str, Any], Secrets]:
    """``spec`` (a RuleSpec's JSON form, values revealed) with its secrets replaced by
    references, and the secrets to store."""
    found: Secrets = {}
    old_actions = (previous or {}).get("actions") or []
    actions = []
    for number, action in enumerate(spec.get("actions") or []):
        action = dict(action)
        old = old_actions[number] if number < len(old_actions) else {}
        where = f"bad rule field actions.{number}"
        if action.get("type") in ("mqtt", "amqp"):
            _url_password(action.get("url", ""), f"{where}.url")
            old_password = old.get("password") if old.get("type") == action["type"] else None
            action["password"] = _hide(action.get("password"), old_password, prefix,
                                       f"{number}-password", f"{where}.password", found)
        elif action.get("type") == "webhook":
            old_headers = old.get("headers") or {} if old.get("type") == "webhook" else {}
            headers = action.get("headers") or {}
            action["headers"] = {
                key: _hide(value, old_headers.get(key), prefix,
                           f"{number}-header-{_digest(key)}",
                           f"{where}.headers.{key}", found)
                for key, value in headers.items()}
        actions.append(action)
    return {**spec, "actions": actions}, found


def hide_bridge(config: dict[str, Any], previous: dict[str, Any] | None, prefix: str
                ) -> tuple[dict[str, Any], Secrets]:
    """``config`` (a BridgeConfig's JSON form) with its password a reference."""
    found: Secrets = {}
    _url_password(config.get("url", ""), "bad bridge option url")
    password = _hide(config.get("password"), (previous or {}).get("password"), prefix,
                     "password", "bad bridge option password", found)
    return {**config, "password": password}, found


def _masked_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:{MASK}@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def mask_rule(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored rule as answers show it: every secret ``***``."""
    actions = []
    for action in spec.get("actions") or []:
        action = dict(action)
        if action.get("password") is not None:
            action["password"] = MASK
        if action.get("headers"):
            action["headers"] = dict.fromkeys(action["headers"], MASK)
        if "url" in action:
            action["url"] = _masked_url(action["url"])
        actions.append(action)
    return {**spec, "actions": actions}


def mask_bridge(config: dict[str, Any]) -> dict[str, Any]:
    """A stored bridge config as answers show it."""
    shown = {**config, "url": _masked_url(config.get("url", ""))}
    if shown.get("password") is not None:
        shown["password"] = MASK
    return shown


def store_secrets(secrets: SecretStore, found: Secrets) -> None:
    for name, value in found.items():
        if secrets.exists(name):
            secrets.update(name, value)
        else:
            secrets.create(name, value)


def drop_secrets(secrets: SecretStore, prefix: str, stored_text: str,
                 keep: str = "") -> None:
    """Delete the resource's secrets ``stored_text`` refers to, but those ``keep`` refers
    to."""
    kept = set(secret_refs(keep))
    for name in secret_refs(stored_text):
        if name.startswith(prefix + "-") and name not in kept:
            try:
                secrets.delete(name)
            except NotFound:
                pass




def revealed(value: Any) -> Any:
    """A model dump (``mode="python"``) with every ``SecretStr`` as its value, for storing
    (after :func:`hide_rule` / :func:`hide_bridge`)."""
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: revealed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [revealed(item) for item in value]
    return value


__all__ = ["drop_secrets", "hide_bridge", "hide_rule", "mask_bridge", "mask_rule",
           "prefix_of", "revealed", "store_secrets"]
