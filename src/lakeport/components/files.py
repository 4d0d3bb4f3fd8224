"""A small local file storage for component files (``in/files``, ``out/files``).

Each file has an id, a name, tags, a creation time, the run id that uploaded it and the
``is_public`` / ``is_permanent`` flags; its bytes and a JSON record live in a folder under the
lakeport home. Files are found by tags and by the contract's simple query language::

    name:.zip                        name contains ".zip"
    tags: toprocess AND NOT tags: downloaded
    (name:a OR name:b) AND tags:x    NOT binds tighter than AND, AND tighter than OR
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lakeport.errors import Invalid, NotFound
from lakeport.home import file_lock, lakeport_home, private_folder

DEFAULT_LIMIT = 10


@dataclass
class StoredFile:
    """A file of the component file storage."""

    id: int
    name: str
    tags: list[str] = field(default_factory=list)
    created: str = ""
    run_id: str | None = None
    is_public: bool = False
    is_permanent: bool = False
    is_encrypted: bool = False
    size_bytes: int = 0

    def manifest(self) -> dict[str, object]:
        """The input manifest of this file (the fields the contract's library reads)."""
        created = datetime.fromisoformat(self.created).strftime("%Y-%m-%dT%H:%M:%S%z")
        return {"id": self.id, "name": self.name, "created": created,
                "is_public": self.is_public, "is_encrypted": self.is_encrypted,
                "is_sliced": False, "tags": list(self.tags), "max_age_days": None
                if self.is_permanent else 15, "size_bytes": self.size_bytes,
                "run_id": self.run_id}


# -- the query language -----------------------------------------------------------------------
_TOKEN = re.compile(r'\s*(?:(\()|(\))|(name|tags)\s*:\s*("[^"]*"|[^\s()]+)|("[^"]*"|[^\s()]+))')
Predicate = Callable[[StoredFile], bool]


def _tokens(query: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    query = query.rstrip()
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if not match or match.end() == pos:
            raise Invalid(f"file query {query!r}: cannot read from {query[pos:]!r}")
        pos = match.end()
        lparen, rparen, fieldname, value, word = match.groups()
        if lparen:
            out.append(("(", "("))
        elif rparen:
            out.append((")", ")"))
        elif fieldname:
            out.append((fieldname, value.strip('"')))
        elif word in ("AND", "OR", "NOT"):
            out.append((word, word))
        else:
            out.append(("name", word.strip('"')))
    return out


def parse_query(query: str) -> Predicate:
    """Compile a file query to a predicate; Invalid names the query when it does not parse."""
    tokens = _tokens(query)
    pos = 0

    def peek() -> str | None:
        return tokens[pos][0] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise Invalid(f"file query {query!r}: ends too early")
        pos += 1
        return tokens[pos - 1]

    def term() -> Predicate:
        kind, value = take()
        if kind == "NOT":
            inner = term()
            return lambda f: not inner(f)
        if kind == "(":
            inner = either()
            if take()[0] != ")":
                raise Invalid(f"file query {query!r}: missing ')'")
            return inner
        if kind == "name":
            return lambda f: value.lower() in f.name.lower()
        if kind == "tags":
            return lambda f: value in f.tags
        raise Invalid(f"file query {query!r}: unexpected {value!r}")

    def both() -> Predicate:
        parts = [term()]
        while peek() not in (None, "OR", ")"):
            if peek() == "AND":
                take()
            parts.append(term())
        return lambda f: all(p(f) for p in parts)

    def either() -> Predicate:
        parts = [both()]
        while peek() == "OR":
            take()
            parts.append(both())
        return lambda f: any(p(f) for p in parts)

    predicate = either()
    if pos != len(tokens):
        raise Invalid(f"file query {query!r}: unexpected {tokens[pos][1]!r}")
    return predicate


def same_chain(run_id: str) -> Callable[[str | None], bool]:
    """Whether a file's run id belongs to the chain of jobs of ``run_id``: the parent run
    (``1.2`` for ``1.2.3``; the run itself when it has no parent) or any run below it."""
    parent = run_id.rsplit(".", 1)[0]
    return lambda other: other is not None and (other == parent
                                                or other.startswith(parent + "."))


class FileStore:
    """Component files in a folder (default ``<lakeport home>/component-files``)."""

    FOLDER = "component-files"

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else lakeport_home() / self.FOLDER

    def _records(self) -> Path:
        return private_folder(self.root / "records")

    def _blob(self, record: StoredFile) -> Path:
        return self.root / "blobs" / str(record.id)

    def _save(self, record: StoredFile) -> None:
        path = self._records() / f"{record.id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, path)

    def upload(self, path: str | Path, name: str | None = None, tags: Iterable[str] = (),
               run_id: str | None = None, is_public: bool = False,
               is_permanent: bool = False, is_encrypted: bool = False) -> StoredFile:
        """Store a copy of ``path`` and return its record."""
        path = Path(path)
        with file_lock(self.root / ".lock"):
            ids = [int(p.stem) for p in self._records().glob("*.json")]
            record = StoredFile(
                id=max(ids, default=0) + 1, name=name or path.name, tags=list(dict.fromkeys(tags)),
                created=datetime.now(UTC).isoformat(), run_id=run_id, is_public=is_public,
                is_permanent=is_permanent, is_encrypted=is_encrypted,
                size_bytes=path.stat().st_size)
            private_folder(self.root / "blobs")
            shutil.copyfile(path, self._blob(record))
            self._save(record)
        return record

    def files(self) -> list[StoredFile]:
        """Every file, newest first."""
        records = [StoredFile(**json.loads(p.read_text()))
                   for p in self._records().glob("*.json")]
        return sorted(records, key=lambda r: r.id, reverse=True)

    def get(self, file_id: int) -> StoredFile:
        """One file's record (NotFound when missing)."""
        try:
            return StoredFile(**json.loads((self._records() / f"{file_id}.json").read_text()))
        except FileNotFoundError:
            raise NotFound(f"no component file {file_id}") from None

    def copy_to(self, record: StoredFile, dest: Path) -> None:
        """Copy the file's bytes to ``dest``."""
        shutil.copyfile(self._blob(record), dest)

    def find(self, tags: Iterable[str] = (), query: str | None = None,
             run_id: str | None = None, limit: int | None = None,
             where: str = "file mapping") -> list[StoredFile]:
        """Files having every tag and matching the query (and uploaded within the chain of
        jobs of ``run_id`` when it is given), newest first. Without a limit more than
        ``DEFAULT_LIMIT`` matches is an error, to prevent accidental downloads."""
        wanted = list(tags)
        predicate = parse_query(query) if query else (lambda f: True)
        chain = same_chain(run_id) if run_id else None
        found = [f for f in self.files()
                 if all(t in f.tags for t in wanted) and predicate(f)
                 and (chain is None or chain(f.run_id))]
        if limit is None and len(found) > DEFAULT_LIMIT:
            raise Invalid(f"{where}: {len(found)} files match, more than the default limit of "
                          f"{DEFAULT_LIMIT}; set a limit or narrow the tags or query")
        return found[: limit or DEFAULT_LIMIT]

    def add_tags(self, file_ids: Iterable[int], tags: Iterable[str]) -> None:
        """Add ``tags`` to exactly the files ``file_ids``."""
        tags = list(tags)
        with file_lock(self.root / ".lock"):
            for file_id in file_ids:
                record = self.get(file_id)
                record.tags = list(dict.fromkeys([*record.tags, *tags]))
                self._save(record)
