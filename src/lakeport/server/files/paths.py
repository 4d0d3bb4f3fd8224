"""Data-lake paths: relative, ``/``-separated, no ``.``/``..`` or empty segments, NFC.

A path names one file however it was typed: it is NFC-normalised (``é`` precomposed or
decomposed is the same file), and characters that hide what a name says or that come from a
broken encoding are refused (controls, bidirectional and zero-width format characters, lone
surrogates, and U+FFFD, which stands for bytes that were not UTF-8).
"""

from __future__ import annotations

import re
import unicodedata

from lakeport.errors import Invalid

MAX_PATH = 1024
MAX_SEGMENT = 255
REPLACEMENT = "\ufffd"
"""What undecodable bytes become when a URL is percent-decoded: refused in paths."""
_BAD_ASCII = re.compile(r"[\x00-\x1f\x7f\\]")
_CONTROLS = "backslashes, control characters and line separators are refused"
_REASONS = {
    "Cc": ("control character", _CONTROLS),
    "Zl": ("line separator", _CONTROLS),
    "Zp": ("paragraph separator", _CONTROLS),
    "Cf": ("format character", "invisible format characters (bidirectional controls, "
                               "zero-width characters) are refused"),
    "Cs": ("lone surrogate", "the path is not valid UTF-8"),
}


def _refused(path: str) -> tuple[str, str] | None:
    """(the first refused character of ``path``, why), None when there is none."""
    if path.isascii():
        found = _BAD_ASCII.search(path)
        return (found[0], _CONTROLS) if found is not None else None
    for char in path:
        if char == "\\":
            return char, _CONTROLS
        if char == REPLACEMENT:
            return char, ("the path is not valid UTF-8 (undecodable bytes become U+FFFD): "
                          "percent-encode paths as UTF-8")
        reason = _REASONS.get(unicodedata.category(char))
        if reason is not None:
            return char, reason[1]
    return None


def _describe(char: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE)``; controls and surrogates by their kind."""
    name = unicodedata.name(char, None) or _REASONS.get(
        unicodedata.category(char), ("character",))[0]
    return f"U+{ord(char):04X} ({name})"


def check_path(path: str, *, allow_root: bool = False) -> str:
    """``path`` NFC-normalised (one trailing ``/`` dropped); Invalid naming what is wrong."""
    if not isinstance(path, str):
        raise Invalid(f"bad path {path!r}: expected a string")
    shown = repr(path) if len(path) <= 80 else repr(path[:60]) + "..."
    if len(path) > 8 * MAX_PATH:  # before normalising: NFC shrinks a text 4 times at most
        raise Invalid(f"bad path {shown}: longer than {MAX_PATH} characters")
    if not path.isascii():
        path = unicodedata.normalize("NFC", path)
    bad = _refused(path)
    if bad is not None:
        raise Invalid(f"bad path {shown}: {_describe(bad[0])} is not allowed: {bad[1]}")
    if path.endswith("/") and len(path) > 1:
        path = path[:-1]
    if path == "":
        if allow_root:
            return ""
        raise Invalid("bad path '': a file path needs at least one name, like data/file.csv")
    if len(path) > MAX_PATH or len(path.encode()) > 2 * MAX_PATH:
        raise Invalid(f"bad path {shown}: longer than {MAX_PATH} characters")
    if path.startswith("/"):
        raise Invalid(f"bad path {shown}: paths are relative to the lake (no leading /)")
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
