"""Data-lake paths: relative, ``/``-separated, no ``.``/``..`` or empty segments."""

from __future__ import annotations

import re

from lakeport.errors import Invalid

MAX_PATH = 1024
MAX_SEGMENT = 255
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def check_path(path: str, *, allow_root: bool = False) -> str:
    """``path`` normalised (one trailing ``/`` dropped); Invalid naming what is wrong."""
    if not isinstance(path, str):
        raise Invalid(f"bad path {path!r}: expected a string")
    shown = repr(path) if len(path) <= 80 else repr(path[:60]) + "..."
    if path.endswith("/") and len(path) > 1:
        path = path[:-1]
    if path == "":
        if allow_root:
            return ""
        raise Invalid("bad path '': a file path needs at least one name, like data/file.csv")
    try:
        size = len(path.encode())
    except UnicodeEncodeError:
        raise Invalid(f"bad path {shown}: not valid UTF-8") from None
    if len(path) > MAX_PATH or size > 2 * MAX_PATH:
        raise Invalid(f"bad path {shown}: longer than {MAX_PATH} characters")
    if path.startswith("/"):
        raise Invalid(f"bad path {shown}: paths are relative to the lake (no leading /)")
    if _BAD_CHARS.search(path):
        raise Invalid(f"bad path {shown}: backslashes and control characters are not allowed")
    for segment in path.split("/"):
        if segment == "..":
            raise Invalid(f"bad path {shown}: '..' is not allowed "
                          "(paths cannot leave the lake root)")
        if segment in ("", "."):
            what = "empty names (//)" if segment == "" else "'.' names"
            raise Invalid(f"bad path {shown}: {what} are not allowed")
        if len(segment) > MAX_SEGMENT:
            raise Invalid(f"bad path {shown}: a name is longer than {MAX_SEGMENT} characters")
    return path


def parent_of(path: str) -> str:
    """The directory holding ``path`` (``""`` is the root)."""
    return path.rpartition("/")[0]


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def ancestors(path: str) -> list[str]:
    """The directories above ``path``, outermost first (``a/b/c`` → ``a``, ``a/b``)."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def glob_to_like(pattern: str) -> str:
    """A shell glob (``*``, ``?``) as a SQL LIKE pattern with ``\\`` as the escape."""
    out = []
    for char in pattern:
        if char in "\\%_":
            out.append("\\" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


__all__ = ["MAX_PATH", "ancestors", "check_path", "glob_to_like", "name_of", "parent_of"]
