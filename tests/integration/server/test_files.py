"""The data-lake file service over HTTP: bytes, metadata, directories, search, ranges."""

from __future__ import annotations

import hashlib
import io
import socket
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from server_fixtures import Platform

API = "/api/v1"


def lake_objects(platform: Platform) -> list[Path]:
    root = Path(unquote(urlsplit(platform.settings.lake_url).path))
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_put_get_overwrite_append_delete(platform: Platform) -> None:
    body = b"time,temp\n2026-01-15T08:00:00Z,21.5\n"
    with platform.client() as http:
        created = http.put(f"{API}/files/plant/line1/readings.csv", content=body,
                           params={"tags": "raw,line1"},
                           headers={"x-lakeport-meta-site": "pune"})
        assert created.status_code == 201, created.text
        info = created.json()
        assert info["path"] == "plant/line1/readings.csv" and info["kind"] == "file"
        assert info["size"] == len(body) and info["owner"] == "alice"
        assert info["checksum"] == "sha256:" + hashlib.sha256(body).hexdigest()
        assert info["content_type"] == "text/csv" and info["archived"] is False
        assert info["tags"] == ["line1", "raw"] and info["metadata"] == {"site": "pune"}
        assert info["created"].endswith("Z") and info["modified"].endswith("Z")

        download = http.get(f"{API}/files/plant/line1/readings.csv")
        assert download.status_code == 200 and download.content == body
        assert download.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
        assert download.headers["content-type"].startswith("text/csv")

        again = http.put(f"{API}/files/plant/line1/readings.csv", content=b"other")
        assert again.status_code == 409 and "overwrite=true" in again.json()["error"]["message"]
        assert http.get(f"{API}/files/plant/line1/readings.csv").content == body

        replaced = http.put(f"{API}/files/plant/line1/readings.csv", content=b"a,b\n1,2\n",
                            params={"overwrite": "true"})
        assert replaced.status_code == 200 and replaced.json()["size"] == 8
        assert replaced.json()["tags"] == ["line1", "raw"]  # kept when not given again
        appended = http.post(f"{API}/files/plant/line1/readings.csv", content=b"3,4\n",
                             params={"op": "append"})
        assert appended.status_code == 200
        assert appended.json()["checksum"] == \
            "sha256:" + hashlib.sha256(b"a,b\n1,2\n3,4\n").hexdigest()
        assert http.get(f"{API}/files/plant/line1/readings.csv").content == b"a,b\n1,2\n3,4\n"
        assert len(lake_objects(platform)) == 1  # replaced objects are deleted

        fresh = http.post(f"{API}/files/logs/new.log", content=b"first\n",
                          params={"op": "append"})
        assert fresh.status_code == 200 and fresh.json()["size"] == 6

        assert http.delete(f"{API}/files/plant/line1/readings.csv").status_code == 204
        gone = http.get(f"{API}/files/plant/line1/readings.csv")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
        assert http.get(f"{API}/info/plant/line1/readings.csv").status_code == 404
    assert len(lake_objects(platform)) == 1  # only logs/new.log is left


def test_range_requests(platform: Platform) -> None:
    body = bytes(range(256)) * 40
    with platform.client() as http:
        http.put(f"{API}/files/blob.bin", content=body).raise_for_status()
        part = http.get(f"{API}/files/blob.bin", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == body[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(body)}"
        tail = http.get(f"{API}/files/blob.bin", headers={"Range": "bytes=-5"})
        assert tail.status_code == 206 and tail.content == body[-5:]
        rest = http.get(f"{API}/files/blob.bin", headers={"Range": "bytes=10000-"})
        assert rest.status_code == 206 and rest.content == body[10000:]
        for bad in ("bytes=20000-", "bytes=9-3", "items=1-2", "bytes=-0"):
            refused = http.get(f"{API}/files/blob.bin", headers={"Range": bad})
            assert refused.status_code == 416, bad
            assert refused.headers["content-range"] == f"bytes */{len(body)}"
            assert refused.json()["error"]["code"] == "range_not_satisfiable"


def test_tags_metadata_search_and_paging(platform: Platform) -> None:
    with platform.client() as http:
        for name, size in (("a.csv", 10), ("b.csv", 2000), ("c.parquet", 30)):
            http.put(f"{API}/files/data/{name}", content=b"x" * size).raise_for_status()
        http.put(f"{API}/files/other/d.csv", content=b"y").raise_for_status()
        patched = http.patch(f"{API}/info/data/a.csv", json={
            "add_tags": ["gold", "2026"], "metadata": {"sensor": "s1", "unit": "C"}})
        assert patched.status_code == 200
        assert patched.json()["tags"] == ["2026", "gold"]
        http.patch(f"{API}/info/data/b.csv", json={"tags": ["gold"],
                                                   "metadata": {"sensor": "s2"}})
        removed = http.patch(f"{API}/info/data/a.csv", json={"remove_tags": ["2026"],
                                                             "metadata": {"unit": None}})
        assert removed.json()["tags"] == ["gold"]
        assert removed.json()["metadata"] == {"sensor": "s1"}

        def paths(**params: object) -> list[str]:
            answer = http.get(f"{API}/search", params=params)
            assert answer.status_code == 200, answer.text
            return [item["path"] for item in answer.json()["items"]]

        assert paths(name="*.csv") == ["data/a.csv", "data/b.csv", "other/d.csv"]
        assert paths(name="C.*") == ["data/c.parquet"]
        assert paths(tag="gold") == ["data/a.csv", "data/b.csv"]
        assert paths(tag=["gold"], **{"meta.sensor": "s2"}) == ["data/b.csv"]
        assert paths(min_size=20, max_size=1000) == ["data/c.parquet"]
        assert paths(under="other") == ["other/d.csv"]
        assert paths(after="2000-01-01T00:00:00Z", before=str(2**41)) == \
            ["data/a.csv", "data/b.csv", "data/c.parquet", "other/d.csv"]
        assert paths(after="2999-01-01") == []
        bad = http.get(f"{API}/search", params={"after": "yesterday"})
        assert bad.status_code == 422 and "after" in bad.json()["error"]["message"]

        seen, cursor = [], None
        while True:
            params = {"name": "*", "limit": 3, **({"cursor": cursor} if cursor else {})}
            answer = http.get(f"{API}/search", params=params).json()
            seen += [item["path"] for item in answer["items"]]
            cursor = answer["next_cursor"]
            if cursor is None:
                break
        assert seen == ["data/a.csv", "data/b.csv", "data/c.parquet", "other/d.csv"]


def test_archive_hides_a_file_from_ls_and_search(platform: Platform) -> None:
    with platform.client() as http:
        http.put(f"{API}/files/old/report.csv", content=b"1").raise_for_status()
        archived = http.post(f"{API}/files/old/report.csv", params={"op": "archive"})
        assert archived.status_code == 200 and archived.json()["archived"] is True
        assert http.get(f"{API}/ls/old").json()["items"] == []
        assert http.get(f"{API}/search", params={"name": "report.csv"}).json()["items"] == []
        shown = http.get(f"{API}/search", params={"name": "report.csv", "archived": "true"})
        assert [i["path"] for i in shown.json()["items"]] == ["old/report.csv"]
        assert http.get(f"{API}/files/old/report.csv").content == b"1"


def test_directories(platform: Platform) -> None:
    with platform.client() as http:
        made = http.post(f"{API}/dirs/site/a/b")
        assert made.status_code == 201
        assert made.json() == {"path": "site/a/b", "kind": "dir", "owner": "alice",
                               "created": made.json()["created"]}
        http.put(f"{API}/files/site/a/x.txt", content=b"x").raise_for_status()
        root = http.get(f"{API}/ls").json()
        assert [(i["path"], i["kind"]) for i in root["items"]] == [("site", "dir")]
        listed = http.get(f"{API}/ls/site/a").json()
        assert [(i["path"], i["kind"]) for i in listed["items"]] == \
            [("site/a/b", "dir"), ("site/a/x.txt", "file")]
        assert listed["next_cursor"] is None
        first = http.get(f"{API}/ls/site/a", params={"limit": 1}).json()
        assert len(first["items"]) == 1 and first["next_cursor"]
        second = http.get(f"{API}/ls/site/a", params={"limit": 1, "cursor": first["next_cursor"]})
        assert [i["path"] for i in second.json()["items"]] == ["site/a/x.txt"]

        assert http.put(f"{API}/files/site/a", content=b"x").status_code == 409
        assert http.put(f"{API}/files/site/a/x.txt/y", content=b"x").status_code == 409
        busy = http.delete(f"{API}/dirs/site")
        assert busy.status_code == 409 and "recursive" in busy.json()["error"]["message"]
        assert http.delete(f"{API}/dirs/site", params={"recursive": "true"}).status_code == 204
        assert http.get(f"{API}/ls/site").status_code == 404
        assert http.get(f"{API}/info/site/a/x.txt").status_code == 404
    assert lake_objects(platform) == []


def test_sharing_with_bob_but_not_carol(platform: Platform) -> None:
    alice, bob, carol = platform.client(), platform.client("bob"), platform.client("carol")
    with alice, bob, carol:
        alice.put(f"{API}/files/team/q1.csv", content=b"a,b\n1,2\n").raise_for_status()
        alice.put(f"{API}/files/private.txt", content=b"secret").raise_for_status()
        assert bob.get(f"{API}/files/team/q1.csv").status_code == 404

        shared = alice.post(f"{API}/shares", json={"path": "team/q1.csv", "user": "bob",
                                                   "permission": "read"})
        assert shared.status_code == 201 and shared.json()["permission"] == "read"
        assert bob.get(f"{API}/files/team/q1.csv").content == b"a,b\n1,2\n"
        assert bob.get(f"{API}/info/team/q1.csv").json()["owner"] == "alice"
        assert bob.get(f"{API}/table/team/q1.csv").json()["rows"] == [[1, 2]]
        assert [i["path"] for i in bob.get(f"{API}/search").json()["items"]] == ["team/q1.csv"]
        write = bob.put(f"{API}/files/team/q1.csv", content=b"x", params={"overwrite": "true"})
        assert write.status_code == 403 and write.json()["error"]["code"] == "forbidden"
        assert bob.patch(f"{API}/info/team/q1.csv", json={"tags": ["x"]}).status_code == 403
        assert bob.delete(f"{API}/files/team/q1.csv").status_code == 403
        assert bob.post(f"{API}/shares", json={"path": "team/q1.csv", "user": "carol",
                                               "permission": "read"}).status_code == 403
        for path in ("files/team/q1.csv", "info/team/q1.csv", "files/private.txt"):
            refused = carol.get(f"{API}/{path}")
            assert refused.status_code == 404, path
        assert carol.put(f"{API}/files/team/q1.csv", content=b"x",
                         params={"overwrite": "true"}).status_code == 404
        assert carol.get(f"{API}/search").json()["items"] == []

        alice.post(f"{API}/shares", json={"path": "team", "user": "bob",
                                          "permission": "write"}).raise_for_status()
        assert bob.put(f"{API}/files/team/q1.csv", content=b"new",
                       params={"overwrite": "true"}).status_code == 200
        assert bob.put(f"{API}/files/team/q2.csv", content=b"bob's").status_code == 201
        assert carol.put(f"{API}/files/team/q3.csv", content=b"x").status_code == 404
        assert alice.get(f"{API}/files/team/q2.csv").content == b"bob's"
        assert alice.get(f"{API}/info/team/q2.csv").json()["owner"] == "alice"  # her tree
        listing = alice.get(f"{API}/shares", params={"path": "team"}).json()["items"]
        assert [(s["user"], s["permission"]) for s in listing] == [("bob", "write")]

        assert alice.delete(f"{API}/shares", params={"path": "team", "user": "bob"}) \
            .status_code == 204
        assert bob.put(f"{API}/files/team/q1.csv", content=b"x",
                       params={"overwrite": "true"}).status_code == 403  # read share is left
        unknown = alice.post(f"{API}/shares", json={"path": "team", "user": "nobody",
                                                    "permission": "read"})
        assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]["message"]


def test_relations_and_lineage(platform: Platform) -> None:
    with platform.client() as http, platform.client("bob") as bob:
        for name in ("raw.csv", "clean.csv", "model.parquet", "report.pdf"):
            http.put(f"{API}/files/p/{name}", content=b"x").raise_for_status()
        for source, target in (("p/clean.csv", "p/raw.csv"), ("p/model.parquet", "p/clean.csv"),
                               ("p/report.pdf", "p/model.parquet")):
            made = http.post(f"{API}/relations", json={"from": source, "to": target,
                                                       "label": "derived_from"})
            assert made.status_code == 201, made.text
        http.post(f"{API}/relations", json={"from": "p/report.pdf", "to": "p/raw.csv",
                                            "label": "cites"}).raise_for_status()
        again = http.post(f"{API}/relations", json={"from": "p/clean.csv", "to": "p/raw.csv"})
        assert again.status_code == 409

        relations = http.get(f"{API}/relations", params={"path": "p/raw.csv"}).json()["items"]
        assert {(r["from"], r["label"]) for r in relations} == \
            {("p/clean.csv", "derived_from"), ("p/report.pdf", "cites")}

        up = http.get(f"{API}/lineage/p/report.pdf", params={"direction": "up"}).json()
        assert up["nodes"] == ["p/report.pdf", "p/model.parquet", "p/clean.csv", "p/raw.csv"]
        assert up["edges"][0] == {"from": "p/report.pdf", "to": "p/model.parquet",
                                  "label": "derived_from"}
        down = http.get(f"{API}/lineage/p/raw.csv", params={"direction": "down", "depth": 2})
        assert down.json()["nodes"] == ["p/raw.csv", "p/clean.csv", "p/model.parquet"]
        assert bob.get(f"{API}/lineage/p/raw.csv").status_code == 404
        missing = http.post(f"{API}/relations", json={"from": "p/raw.csv", "to": "p/none"})
        assert missing.status_code == 404


def test_read_csv_and_parquet_files_as_tables(platform: Platform) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"sensor": ["s1", "s2", "s3"], "value": [1.5, 2.5, 3.5]}), buffer)
    with platform.client() as http:
        http.put(f"{API}/files/t/readings.csv",
                 content=b"sensor,value\ns1,1.5\ns2,2.5\ns3,3.5\n").raise_for_status()
        http.put(f"{API}/files/t/readings.parquet", content=buffer.getvalue()).raise_for_status()
        http.put(f"{API}/files/t/readings.jsonl",
                 content=b'{"sensor": "s1", "value": 1}\n{"sensor": "s2", "value": 2}\n'
                 ).raise_for_status()
        for name in ("readings.csv", "readings.parquet"):
            table = http.get(f"{API}/table/t/{name}", params={"limit": 2})
            assert table.status_code == 200, table.text
            assert table.json() == {"columns": ["sensor", "value"],
                                    "rows": [["s1", 1.5], ["s2", 2.5]], "total_rows": 3}
        lines = http.get(f"{API}/table/t/readings.jsonl").json()
        assert lines["rows"] == [["s1", 1], ["s2", 2]]
        as_parquet = http.get(f"{API}/table/t/readings.csv", params={"format": "parquet"})
        assert as_parquet.headers["content-type"] == "application/vnd.apache.parquet"
        assert pq.read_table(io.BytesIO(as_parquet.content)).column("value").to_pylist() == \
            [1.5, 2.5, 3.5]
        unknown = http.get(f"{API}/table/t/readings.csv", params={"format": "xlsx"})
        assert unknown.status_code == 422 and "xlsx" in unknown.json()["error"]["message"]
        http.put(f"{API}/files/t/broken.parquet", content=b"not parquet").raise_for_status()
        broken = http.get(f"{API}/table/t/broken.parquet")
        assert broken.status_code == 422 and "broken.parquet" in broken.json()["error"]["message"]


def test_paths_that_leave_the_lake_are_rejected(platform: Platform) -> None:
    with platform.client() as http:
        for path in ("%2E%2E/escape.txt", "a/%2E%2E/%2E%2E/escape.txt", "a//b.txt",
                     "a/%2E/b.txt", "a%5Cb.txt"):
            refused = http.put(f"{API}/files/{path}", content=b"x")
            assert refused.status_code == 422, (path, refused.text)
            assert refused.json()["error"]["message"].startswith("bad path")
            assert http.get(f"{API}/info/{path}").status_code == 422
        assert http.get(f"{API}/ls").json()["items"] == []
    assert lake_objects(platform) == []


def test_files_need_an_api_key(platform: Platform) -> None:
    with platform.client(None) as http:
        assert http.put(f"{API}/files/a.txt", content=b"x").status_code == 401
        assert http.get(f"{API}/ls").status_code == 401


def test_an_interrupted_upload_leaves_no_file_and_no_object(platform: Platform) -> None:
    port = int(platform.url.rsplit(":", 1)[1])
    head = (f"PUT {API}/files/big/upload.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"x-api-key: {platform.api_key}\r\nContent-Length: {64 * 2**20}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        for _ in range(12):  # 12 MB of the announced 64 MB
            sock.sendall(b"\0" * 2**20)
        deadline = time.monotonic() + 20
        while not lake_objects(platform) and time.monotonic() < deadline:
            time.sleep(0.05)  # the partial object exists before the connection drops
        assert lake_objects(platform), "the upload never reached the lake"
    deadline = time.monotonic() + 20
    while lake_objects(platform) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lake_objects(platform) == []
    with platform.client() as http:
        assert http.get(f"{API}/info/big/upload.bin").status_code == 404
        assert http.get(f"{API}/ls").json()["items"] == []
