"""YAML files people write by hand (app.yaml, workflow files): a safe loader that refuses a key
given twice, and parse errors as one line with the file, line and column."""

from __future__ import annotations

from typing import Any

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, list | dict):
                continue  # unhashable: the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def yaml_problem(label: str, exc: yaml.MarkedYAMLError) -> str:
    """A YAML error as one line: ``<label> line L, column C: <problem>``."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{label} line {mark.line + 1}, column {mark.column + 1}" if mark else label
    problem = exc.problem or "not valid YAML"
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
    elif exc.context:
        problem = f"{exc.context}: {problem}"
    return f"{where}: {problem}"


def load_with_nodes(text: str) -> tuple[Any, yaml.Node | None]:
    """The data of a YAML document and its node tree (whose marks give each value's line);
    duplicate keys refused. Raises ``yaml.YAMLError``."""
    loader = UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()
    return data, node


def line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """The line (1-based) of the value at ``path`` (mapping keys and list indexes) in a node
    tree, or of the deepest part of it that exists (its key's line for a mapping entry)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            found = next(((key, value) for key, value in node.value
                          if isinstance(key, yaml.ScalarNode) and key.value == str(part)), None)
            if found is None:
                return line
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


__all__ = ["UniqueKeyLoader", "line_of", "load_with_nodes", "yaml_problem"]


def load_mapping_file(path: Any, kind: str, keys: str) -> tuple[dict[str, Any], yaml.Node | None]:
    """The mapping in a ``.yaml``/``.yml`` or ``.json`` file written by hand (a workflow, a
    rule), with its YAML node tree for :func:`line_of` (None for JSON). :class:`Invalid` in one
    line naming the file (and the line where it can) when it cannot be read, is not YAML or
    JSON, gives a key twice, is empty or is not a mapping. ``kind``: what the file holds
    (``workflow``); ``keys``: the keys it needs, for the messages (``name, sql, actions``)."""
    import json
    from pathlib import Path

    from lakeport.errors import Invalid

    file, label = Path(path), str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Invalid(f"{label}: no such file") from None
    except IsADirectoryError:
        raise Invalid(f"{label}: is a folder, not a {kind} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"{label}: cannot be read ({exc})") from None
    nodes: yaml.Node | None = None
    if file.suffix.lower() == ".json":
        def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            found: dict[str, Any] = {}
            for key, value in pairs:
                if key in found:
                    raise Invalid(f"{label}: duplicate key '{key}'")
                found[key] = value
            return found

        try:
            data = json.loads(text, object_pairs_hook=unique)
        except json.JSONDecodeError as exc:
            raise Invalid(f"{label} line {exc.lineno}, column {exc.colno}: not valid JSON "
                          f"({exc.msg})") from None
    else:
        try:
            data, nodes = load_with_nodes(text)
        except yaml.MarkedYAMLError as exc:
            raise Invalid(yaml_problem(label, exc)) from None
        except yaml.YAMLError as exc:
            raise Invalid(f"{label}: not valid YAML ({exc})") from None
    if data is None:
        raise Invalid(f"{label}: is empty (a {kind} needs {keys})")
    if not isinstance(data, dict):
        what = {list: "a list", str: "text"}.get(type(data), f"a {type(data).__name__}")
        raise Invalid(f"{label}: must be a mapping of keys ({keys}, ...), not {what}")
    return data, nodes
