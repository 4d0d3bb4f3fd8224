"""The file service's inputs and outputs at the edges: content types, paths that are not what
they look like, tables that JSON or Parquet cannot carry, how files are served, file modes."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server_fixtures import Platform, platform_settings, running_platform

API = "/api/v1"


def error_of(response: httpx.Response) -> str:
    """The message of a 422 answer."""
    assert response.status_code == 422, (response.status_code, response.text)
    return response.json()["error"]["message"]


def set_content_type(platform: Platform, path: str, value: str) -> None:
    """Store ``value`` as the file's content type, as a server before the upload check did."""
    from lakeport.server.files.tables import entries
    from lakeport.server.store import Store

    async def update() -> None:
        async with Store(platform.settings.store_url) as store, store.begin() as conn:
            result = await conn.execute(entries.update().where(entries.c.path == path)
                                        .values(content_type=value))
            assert result.rowcount == 1

    asyncio.run(update())


# -- content types ------------------------------------------------------------------------
BAD_CONTENT_TYPES = (
    "t\u20acxt/csv",            # not latin-1: cannot be a header value at all
    "t\xebxt/csv",              # latin-1 but not a token
    "text/csv\x01",             # a control character
    "text/csv\r\nx-evil: 1",    # a header injected
    "text",                     # no subtype
    "text/ csv",                # space in place of a token
    "text/csv; charset",        # a parameter without a value
    'text/csv; a="\xe9"',       # a quoted value that is not ASCII
)


def test_a_content_type_that_is_no_header_value_is_refused_at_upload(
        platform: Platform) -> None:
    with platform.client() as http:
        for value in BAD_CONTENT_TYPES:
            message = error_of(http.put(f"{API}/files/a.csv", content=b"x,y\n1,2\n",
                                        params={"content_type": value}))
            assert message.startswith(f"bad content type {value!r}"), (value, message)
            assert http.get(f"{API}/info/a.csv").status_code == 404  # nothing was stored


def test_content_types_from_the_header_are_checked_and_good_ones_kept(
        platform: Platform) -> None:
    with platform.client() as http:
        bad = http.put(f"{API}/files/h.csv", content=b"x",
                       headers={"content-type": "t\xebxt/csv".encode("latin-1")})
        assert "bad content type 't\xebxt/csv'" in error_of(bad)
        for value in ("text/csv; charset=utf-8", 'text/plain;format="a \\"b\\""',
                      "application/vnd.apache.parquet"):
            stored = http.put(f"{API}/files/ok.bin", content=b"x",
                              params={"content_type": value, "overwrite": "true"})
            assert stored.status_code in (200, 201), stored.text
            assert stored.json()["content_type"] == value
            assert http.get(f"{API}/files/ok.bin").status_code == 200


def test_a_bad_content_type_stored_earlier_is_served_as_octet_stream(
        platform: Platform) -> None:
    with platform.client() as http:
        http.put(f"{API}/files/old.csv", content=b"a,b\n").raise_for_status()
        for value in ("t\u20acxt/csv", "text/csv\r\nx-evil: 1", "text"):
            set_content_type(platform, "old.csv", value)
            served = http.get(f"{API}/files/old.csv")
            assert served.status_code == 200 and served.content == b"a,b\n"
            assert served.headers["content-type"] == "application/octet-stream"
            assert "x-evil" not in served.headers
            part = http.get(f"{API}/files/old.csv", headers={"Range": "bytes=0-1"})
            assert part.status_code == 206 and part.content == b"a,"


# -- paths --------------------------------------------------------------------------------
def test_paths_that_are_not_utf8_are_refused_and_never_collide(platform: Platform) -> None:
    with platform.client() as http:
        for raw in ("a%ff%fe.csv", "a%fe%ff.csv", "a%EF%BF%BD.csv", "a%C0%AF.csv",
                    "a%ED%A0%80.csv"):
            message = error_of(http.put(f"{API}/files/{raw}", content=b"x"))
            assert "U+FFFD (REPLACEMENT CHARACTER) is not allowed" in message
            assert "not valid UTF-8" in message
        assert http.get(f"{API}/search").json()["items"] == []
        http.put(f"{API}/files/d/x.csv", content=b"x").raise_for_status()
        for url in (f"{API}/files/d%ff/x.csv", f"{API}/info/d/x%ff.csv",
                    f"{API}/table/d/x%ff.csv", f"{API}/ls/d%ff", f"{API}/lineage/d%ff",
                    f"{API}/shares?path=d%ff", f"{API}/relations?path=d/x%ff.csv",
                    f"{API}/search?under=d%ff"):
            assert "U+FFFD" in error_of(http.get(url)), url
        assert "U+FFFD" in error_of(http.delete(f"{API}/shares?path=d%ff&user=bob"))


INVISIBLE = (
    ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("\u2066", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
    ("\u200f", "U+200F (RIGHT-TO-LEFT MARK)"),
    ("\u061c", "U+061C (ARABIC LETTER MARK)"),
    ("\u200b", "U+200B (ZERO WIDTH SPACE)"),
    ("\u2060", "U+2060 (WORD JOINER)"),
    ("\ufeff", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
    ("\xad", "U+00AD (SOFT HYPHEN)"),
    ("\x85", "U+0085 (control character)"),
    ("\x9b", "U+009B (control character)"),
)


def test_invisible_characters_in_paths_are_refused_by_name(platform: Platform) -> None:
    with platform.client() as http:
        http.put(f"{API}/files/plant/ab.csv", content=b"x").raise_for_status()
        for char, named in INVISIBLE:
            path = f"plant/a{char}b.csv"
            expected = f"bad path {path!r}: {named} is not allowed"
            assert error_of(http.put(f"{API}/files/{path}", content=b"x")).startswith(expected)
            assert error_of(http.get(f"{API}/shares", params={"path": path})) \
                .startswith(expected)
            assert error_of(http.post(f"{API}/shares", json={
                "path": path, "user": "bob", "permission": "read"})).startswith(expected)
            assert error_of(http.post(f"{API}/relations", json={
                "from": "plant/ab.csv", "to": path})).startswith(expected)
        assert [item["path"] for item in http.get(f"{API}/search").json()["items"]] == \
            ["plant/ab.csv"]


def test_a_name_typed_composed_or_decomposed_is_one_file(platform: Platform) -> None:
    composed, decomposed = "caf\u00e9/r\u00e9sum\u00e9.csv", "cafe\u0301/re\u0301sume\u0301.csv"
    with platform.client() as http:
        created = http.put(f"{API}/files/{decomposed}", content=b"a,b\n1,2\n")
        assert created.status_code == 201 and created.json()["path"] == composed
        assert http.get(f"{API}/files/{composed}").content == b"a,b\n1,2\n"
        again = http.put(f"{API}/files/{composed}", content=b"other")
        assert again.status_code == 409  # the same file, not a second one beside it
        assert [e["path"] for e in http.get(f"{API}/ls/cafe\u0301").json()["items"]] == \
            [composed]
        assert http.get(f"{API}/table/{decomposed}").json()["rows"] == [[1, 2]]


# -- tables -------------------------------------------------------------------------------
def parquet_bytes(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


UNCONVERTIBLE = (
    ("year10000.parquet", parquet_bytes(pa.table({
        "ok": [1], "ts": pa.array([253_402_300_800 * 10**6], pa.timestamp("us"))})),
     "json", "ts", "out of range"),
    ("far_date.parquet", parquet_bytes(pa.table({
        "day": pa.array([2**31 - 1], pa.int32()).cast(pa.date32())})), "json", "day", ""),
    ("long.parquet", parquet_bytes(pa.table({
        "took": pa.array([10**17], pa.duration("s"))})), "json", "took", ""),
    ("empty_objects.jsonl", b'{"n": 1, "a": {}}\n{"n": 2, "a": {}}\n', "parquet", "a", ""),
    ("nested_empty.json", b'[{"a": {"b": {}}}]', "parquet", "b", ""),
    ("huge_ints.json", b'[{"n": 1, "a": 1}, {"n": 2, "a": 18446744073709551615}]', "json",
     "a", ""),
)


def test_tables_that_cannot_be_converted_answer_422_naming_the_column(
        platform: Platform) -> None:
    with platform.client() as http:
        for name, body, format, column, why in UNCONVERTIBLE:
            http.put(f"{API}/files/t/{name}", content=body).raise_for_status()
            message = error_of(http.get(f"{API}/table/t/{name}", params={"format": format}))
            assert f"'t/{name}'" in message and repr(column) in message and why in message, \
                (name, message)


def test_tables_json_can_carry_are_still_served(platform: Platform) -> None:
    with platform.client() as http:
        http.put(f"{API}/files/t/empty.jsonl", content=b'{"a": {}}\n').raise_for_status()
        assert http.get(f"{API}/table/t/empty.jsonl").json()["rows"] == [[{}]]
        http.put(f"{API}/files/t/big.jsonl",
                 content=b'{"a": 1}\n{"a": 18446744073709551616}\n').raise_for_status()
        served = http.get(f"{API}/table/t/big.jsonl")  # JSON lines read such numbers as floats
        assert served.status_code == 200 and served.json()["rows"] == [[1.0], [2.0**64]]
        assert served.headers["x-content-type-options"] == "nosniff"
        ts = pa.table({"ts": pa.array([253_402_300_799 * 10**6], pa.timestamp("us"))})
        http.put(f"{API}/files/t/y9999.parquet", content=parquet_bytes(ts)).raise_for_status()
        rows = orjson.loads(http.get(f"{API}/table/t/y9999.parquet").content)["rows"]
        assert rows == [["9999-12-31T23:59:59Z"]]


# -- how files are served -----------------------------------------------------------------
SERVED = (
    ("page.html", None, True),
    ("r\u00e4w page.html", None, True),
    ("pic.svg", None, True),
    ("app.js", None, True),
    ("feed.xml", None, True),
    ("page.xhtml", None, True),
    ("feed.atom", "application/atom+xml", True),
    ("script.bin", "text/javascript; charset=utf-8", True),
    ("styles.bin", "TEXT/HTML", True),
    ("data.csv", None, False),
    ("notes.txt", None, False),
    ("blob.bin", None, False),
)


def test_downloads_are_nosniff_and_active_types_are_attachments(platform: Platform) -> None:
    body = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    with platform.client() as http:
        for name, content_type, active in SERVED:
            params = {"content_type": content_type} if content_type else {}
            http.put(f"{API}/files/web/{name}", content=body, params=params).raise_for_status()
            for headers in ({}, {"Range": "bytes=0-3"}):
                served = http.get(f"{API}/files/web/{name}", headers=headers)
                assert served.status_code in (200, 206)
                assert served.headers["x-content-type-options"] == "nosniff"
                disposition = served.headers.get("content-disposition")
                if active:
                    assert disposition is not None and disposition.startswith("attachment; ")
                    encoded = disposition.split("filename*=UTF-8''", 1)[1]
                    assert unquote(encoded) == name and encoded.isascii() and \
                        " " not in encoded
                else:
                    assert disposition is None, name


# -- file modes ---------------------------------------------------------------------------
@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual umask (022): without care, new folders are 0755 and files 0644."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_lake_the_store_and_the_home_are_private(
        permissive_umask: None, empty_store_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server makes its store (a new one: the folder of a SQLite file too), its lake and
    the lakeport home readable by its user alone."""
    with running_platform(platform_settings(empty_store_url, tmp_path)) as platform, \
            platform.client() as http:
        http.put(f"{API}/files/secret/a.csv", content=b"a,b\n").raise_for_status()
        http.post(f"{API}/files/secret/a.csv", content=b"1,2\n",
                  params={"op": "append"}).raise_for_status()
    lake = Path(unquote(urlsplit(platform.settings.lake_url).path))
    objects = [p for p in lake.rglob("*") if p.is_file()]
    assert len(objects) == 1
    assert {mode_of(p) for p in [lake, *[p for p in lake.rglob("*") if p.is_dir()]]} == {0o700}
    assert mode_of(objects[0]) == 0o600
    if platform.settings.store_url.startswith("sqlite"):
        database = Path(platform.settings.store_url.removeprefix("sqlite:///"))
        assert mode_of(database.parent) == 0o700
        files = list(database.parent.iterdir())
        assert database in files and {mode_of(p) for p in files} == {0o600}

    from lakeport.home import lakeport_home

    monkeypatch.setenv("LAKEPORT_HOME", str(tmp_path / "new" / "home"))
    home = lakeport_home()
    assert home == tmp_path / "new" / "home"
    assert mode_of(home) == 0o700 and mode_of(home.parent) == 0o700
