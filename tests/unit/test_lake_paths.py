"""Data-lake paths: what is accepted, what is refused and why."""

from __future__ import annotations

import pytest

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


def test_the_root_is_allowed_only_where_asked() -> None:
    assert check_path("", allow_root=True) == ""


def test_parents_names_and_ancestors() -> None:
    assert parent_of("a/b/c.csv") == "a/b" and parent_of("c.csv") == ""
    assert name_of("a/b/c.csv") == "c.csv"
    assert ancestors("a/b/c.csv") == ["a", "a/b"] and ancestors("c.csv") == []


def test_globs_become_like_patterns_with_escapes() -> None:
    assert glob_to_like("*.csv") == "%.csv"
    assert glob_to_like("r?w_100%") == "r_w\\_100\\%"
