"""Pydantic validation errors of an ``app.yaml`` as one-line ``path: message`` problems."""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from lakeport.apps.manifest_system import PATTERN_MESSAGES

_TYPE_MESSAGES = {
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "none_required": "must be empty",
}
_HINTS = {
    ("volumes", "source"): "a host volume takes host: {source: ...}",
    ("volumes", "data"): "a text volume takes text: {data: ...}",
    ("ports", "port"): "a host port takes host: {port: ...}, a service port service: {port: ...}",
    ("ports", "exposed_port"): "a service port takes service: {port: ..., exposed_port: ...}",
}


def validation_problems(exc: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One ``path: message`` line per error of ``exc`` (raised by ``root``, the manifest model
    by default), paths like ``volumes[1].type``."""
    if root is None:
        from lakeport.apps.manifest_models import ManifestModel

        root = ManifestModel
    return [_problem(error, root) for error in exc.errors(include_url=False)]


def _problem(error: Any, root: type[BaseModel]) -> str:
    loc = list(error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    value = error.get("input")
    if kind == "lakeport":
        path = _loc_path(loc)
        at = ctx.get("at", "")
        if at:
            path = f"{path}{'' if at.startswith('[') or not path else '.'}{at}"
        return f"{path or 'app.yaml'}: {ctx['message']}"
    path = _loc_path(loc) or "app.yaml"
    if kind == "extra_forbidden":
        return f"{path}: unknown key{_unknown_key_hint(loc, root)}"
    if kind == "literal_error":
        choices = ", ".join(re.findall(r"'([^']*)'", ctx.get("expected", "")))
        return f"{path}: must be one of {choices}{_got(value)}"
    if kind == "string_pattern_mismatch":
        message = PATTERN_MESSAGES.get(ctx.get("pattern"), f"must match {ctx.get('pattern')}")
        if isinstance(value, str) and value.endswith("m") and loc[-1] == "memory":
            return f"{path}: {message} ('{value}' would mean millibytes: write {value[:-1]}Mi)"
        return f"{path}: {message}{_got(value)}"
    if kind == "string_too_long":
        return f"{path}: must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"{path}: must not be empty"
    if kind == "too_short":
        return f"{path}: must have at least {ctx.get('min_length')} item(s)"
    if kind in ("greater_than_equal", "greater_than"):
        return f"{path}: must be at least {ctx.get('ge', ctx.get('gt'))}{_got(value)}"
    if kind in ("less_than_equal", "less_than"):
        return f"{path}: must be at most {ctx.get('le', ctx.get('lt'))}{_got(value)}"
    if kind == "missing":
        return f"{path}: required"
    if kind in _TYPE_MESSAGES:
        return f"{path}: {_TYPE_MESSAGES[kind]}{_got(value)}"
    if kind == "value_error":
        return f"{path}: {ctx.get('error', error['msg'])!s}"
    return f"{path}: {error['msg'][:1].lower()}{error['msg'][1:]}"


def _loc_path(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _got(value: Any) -> str:
    """`` (got 'integer')`` for a scalar input, `` (got a list)`` for a collection."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return f" (got a {kind_of(value)})"
    if isinstance(value, bool):
        shown = "true" if value else "false"
    else:
        shown = repr(value) if isinstance(value, str) else str(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f" (got {shown})"


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "mapping", list: "list", str: "text", bool: "boolean", int: "number",
            float: "number"}.get(type(value), type(value).__name__)


def _unknown_key_hint(loc: Sequence[Any], root: type[BaseModel]) -> str:
    key = loc[-1]
    parent = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), None)
    hint = _HINTS.get((parent, key)) if parent else None
    if hint:
        return f" ({hint})"
    known = _known_keys(root, loc[:-1])
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _known_keys(root: type[BaseModel], parent_loc: Sequence[Any]) -> list[str]:
    """The keys allowed at ``parent_loc`` (for did-you-mean hints on unknown keys)."""
    model: Any = root
    for part in parent_loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The model in ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None
