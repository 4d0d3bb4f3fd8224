"""Data-lake paths: what is accepted, what is refused and why."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakeport.errors import Invalid
from lakeport.server.files.paths import (
    ancestors,
    check_path,
    glob_to_like,
    name_of,
    parent_of,
)


@pytest.mark.parametrize("path", ["a.csv", "a/b/c.csv", "plant 1/Zürich/räw data.csv",
                                  "/".join(["x" * 200] * 5)[:1024], "a/b/"])
def test_good_paths_are_accepted(path: str) -> None:
    assert check_path(path) == path.rstrip("/")


@pytest.mark.parametrize(("path", "reason"), [
    ("../x", "'..' is not allowed"),
    ("a/../../x", "'..' is not allowed"),
    ("a/..", "'..' is not allowed"),
    ("/etc/passwd", "no leading /"),
    ("a//b", "empty names"),
    ("a/./b", "'.' names"),
    ("a\\b", "backslashes"),
    ("a\x00b", "control characters"),
    ("", "at least one name"),
    ("x" * 1025, "longer than 1024"),
    ("a/" + "y" * 256, "longer than 255"),
    ("bad\udc80", "UTF-8"),
])
def test_bad_paths_say_why(path: str, reason: str) -> None:
    with pytest.raises(Invalid, match="bad path") as caught:
        check_path(path)
    assert reason in str(caught.value)


@pytest.mark.parametrize(("char", "named"), [
    ("\x85", "U+0085 (control character)"),
    ("\x9f", "U+009F (control character)"),
    ("\u202a", "U+202A (LEFT-TO-RIGHT EMBEDDING)"),
    ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("\u2066", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
    ("\u2069", "U+2069 (POP DIRECTIONAL ISOLATE)"),
    ("\u200e", "U+200E (LEFT-TO-RIGHT MARK)"),
    ("\u200f", "U+200F (RIGHT-TO-LEFT MARK)"),
    ("\u061c", "U+061C (ARABIC LETTER MARK)"),
    ("\u200b", "U+200B (ZERO WIDTH SPACE)"),
    ("\u200c", "U+200C (ZERO WIDTH NON-JOINER)"),
    ("\u200d", "U+200D (ZERO WIDTH JOINER)"),
    ("\u2060", "U+2060 (WORD JOINER)"),
    ("\ufeff", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
    ("\xad", "U+00AD (SOFT HYPHEN)"),
    ("\U000e0041", "U+E0041 (TAG LATIN CAPITAL LETTER A)"),
    ("\u2028", "U+2028 (LINE SEPARATOR)"),
    ("\ud800", "U+D800 (lone surrogate)"),
    ("\ufffd", "U+FFFD (REPLACEMENT CHARACTER)"),
])
def test_invisible_and_broken_characters_are_refused_by_name(char: str, named: str) -> None:
    with pytest.raises(Invalid) as caught:
        check_path(f"plant/a{char}b.csv")
    assert str(caught.value).startswith(f"bad path {f'plant/a{char}b.csv'!r}: {named} "
                                        "is not allowed")


def test_paths_are_nfc_so_one_name_is_one_file() -> None:
    composed, decomposed = "caf\u00e9/r\u00e9sum\u00e9.csv", "cafe\u0301/re\u0301sume\u0301.csv"
    assert check_path(decomposed) == composed == check_path(composed)
    assert check_path("\u212b.csv") == "\u00c5.csv"  # ANGSTROM SIGN is Å
    assert check_path("a/" + "e\u0301" * 255) == "a/" + "\u00e9" * 255  # lengths count NFC


_TRICKY = ["a", "Z", "0", ".", "/", "-", " ", "\\", "\x00", "\x1f", "\x7f", "\x85", "\xa0",
           "e", "\u0301", "\u00e9", "\u212b", "\u037e", "\u1100", "\u1161", "\u11a8", "\u0958",
           "\u202e", "\u2066", "\u200d", "\ufeff", "\u2028", "\ufffd", "\ud800", "\udfff",
           "\U0001f600", "\U000e0001"]
_PATHS = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.lists(st.text(st.sampled_from(_TRICKY), max_size=6), max_size=5).map("/".join),
    st.lists(st.text(st.characters(exclude_categories=()), max_size=4), min_size=1,
             max_size=4).map("/".join),
)
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@settings(database=None, max_examples=500)
@given(_PATHS, st.booleans())
def test_check_path_properties(path: str, allow_root: bool) -> None:
    """Only Invalid is raised; a result is NFC, free of refused characters, a fixed point,
    and the same for every canonically equivalent spelling."""
    try:
        checked = check_path(path, allow_root=allow_root)
    except Invalid as exc:
        assert str(exc).startswith("bad path ")
        return
    assert unicodedata.is_normalized("NFC", checked)
    assert not any(unicodedata.category(c) in _REFUSED_CATEGORIES or c in "\\\ufffd"
                   for c in checked)
    assert check_path(checked, allow_root=allow_root) == checked
    assert check_path(unicodedata.normalize("NFD", path), allow_root=allow_root) == checked
    checked.encode("utf-8")  # a lone surrogate would raise here


def test_the_root_is_allowed_only_where_asked() -> None:
    assert check_path("", allow_root=True) == ""


def test_parents_names_and_ancestors() -> None:
    assert parent_of("a/b/c.csv") == "a/b" and parent_of("c.csv") == ""
    assert name_of("a/b/c.csv") == "c.csv"
    assert ancestors("a/b/c.csv") == ["a", "a/b"] and ancestors("c.csv") == []


def test_globs_become_like_patterns_with_escapes() -> None:
    assert glob_to_like("*.csv") == "%.csv"
    assert glob_to_like("r?w_100%") == "r_w\\_100\\%"
