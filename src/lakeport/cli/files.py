"""``lakeport files ...``: the data-lake file service of a running lakeport server."""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer

from lakeport.cli.common import (
    human_bytes,
    json_line,
    parse_option,
    parse_pairs,
    stderr,
    write_out,
)
from lakeport.cli.remote import (
    ApiKeyOption,
    JsonOption,
    LimitOption,
    ServerOption,
    call,
    show_record,
    show_records,
)
from lakeport.errors import Invalid
from lakeport.units import parse_size

app = typer.Typer(
    help="Files in the data lake of a lakeport server: put, get, ls, search, share, relate, "
    "read as a table.\n\n"
    "Example: lakeport files put runs.csv lab/runs.csv --tag raw && "
    "lakeport files search --tag raw",
    no_args_is_help=True,
)

PathArg = Annotated[str, typer.Argument(help="Path in the lake (a/b/c.csv).",
                                        show_default=False)]
TagOption = Annotated[list[str] | None, typer.Option(
    "--tag", help="A tag (repeatable).", show_default=False)]
MetaOption = Annotated[list[str] | None, typer.Option(
    "--meta", help="Metadata key=value (repeatable).", show_default=False)]


def _rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "size": human_bytes(item["size"]) if item.get("size") is not None
             else None} for item in items]


def _listing(items: list[dict[str, Any]], as_json: bool, empty: str) -> None:
    from lakeport.client.datalake import INFO_COLUMNS

    show_records(items if as_json else _rows(items), as_json, None if as_json else INFO_COLUMNS,
                 empty)


@app.command()
def put(
    local: Annotated[Path, typer.Argument(help="Local file (- for stdin).", show_default=False)],
    path: PathArg,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")]
    = False,
    tag: TagOption = None, meta: MetaOption = None,
    content_type: Annotated[str | None, typer.Option(
        "--content-type", help="MIME type (default: guessed by the server).",
        show_default=False)] = None,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Upload a local file to PATH in the lake (streamed, any size)."""
    source: Any = sys.stdin.buffer if str(local) == "-" else local
    info = call(url, api_key, lambda c: c.datalake.put(
        path, source, overwrite=overwrite, tags=tag, content_type=content_type,
        metadata=parse_pairs(meta, "--meta")))
    if as_json:
        write_out(json_line(info))
    else:
        stderr.print(f"uploaded {info['path']} ({human_bytes(info['size'])}, "
                     f"{info.get('checksum', '')})", markup=False, soft_wrap=True)


@app.command()
def get(
    path: PathArg,
    local: Annotated[Path | None, typer.Argument(
        help="Where to save (default: the file's name here; - for stdout).",
        show_default=False)] = None,
    byte_range: Annotated[str | None, typer.Option(
        "--range", help="Only bytes FIRST-LAST (LAST inclusive, may be left out).",
        show_default=False)] = None,
    url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Download a file from the lake (streamed)."""
    target = local if local is not None else Path(PurePosixPath(path).name or "download")
    to_stdout = str(target) == "-"
    dest: Any = sys.stdout.buffer if to_stdout else target
    written = call(url, api_key, lambda c: c.datalake.get(path, dest,
                                                          range=_range(byte_range)))
    if to_stdout:
        sys.stdout.buffer.flush()
    else:
        stderr.print(f"saved {human_bytes(written)} to {target}", markup=False)


def _range(text: str | None) -> tuple[int, int | None] | None:
    if text is None:
        return None
    first, sep, last = text.partition("-")
    try:
        if not sep:
            raise ValueError
        return int(first), int(last) if last else None
    except ValueError:
        raise Invalid(f"--range: expected FIRST-LAST byte offsets (e.g. 0-1023), got {text!r}") \
            from None


@app.command()
def ls(
    path: Annotated[str, typer.Argument(help="Directory (default: the root).")] = "",
    limit: LimitOption = None, as_json: JsonOption = False, url: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List a directory of the lake."""
    items = call(url, api_key, lambda c: c.datalake.ls(path, limit=limit))
    _listing(items, as_json, f"{path or 'the lake'} is empty")


@app.command()
def info(path: PathArg, as_json: JsonOption = False, url: ServerOption = None,
         api_key: ApiKeyOption = None) -> None:
    """Show a file's size, checksum, owner, times, tags and metadata."""
    show_record(call(url, api_key, lambda c: c.datalake.info(path)), as_json)


@app.command()
def rm(
    path: PathArg,
    directory: Annotated[bool, typer.Option("--dir", help="PATH is a directory.")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r",
                                            help="A directory with everything in it.")] = False,
    url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Delete a file (or, with --dir / -r, a directory)."""
    if directory or recursive:
        call(url, api_key, lambda c: c.datalake.rmdir(path, recursive=recursive))
    else:
        call(url, api_key, lambda c: c.datalake.delete(path))
    stderr.print(f"deleted {path}", markup=False)


@app.command()
def mkdir(path: PathArg, url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Create a directory (and its parents)."""
    call(url, api_key, lambda c: c.datalake.mkdir(path))
    stderr.print(f"created directory {path}", markup=False)


@app.command()
def archive(path: PathArg, url: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Archive a file (hidden from ls and search unless --archived)."""
    call(url, api_key, lambda c: c.datalake.archive(path))
    stderr.print(f"archived {path}", markup=False)


@app.command()
def search(
    name: Annotated[str | None, typer.Option(help="Name glob, e.g. '*.csv'.",
                                             show_default=False)] = None,
    tag: TagOption = None, meta: MetaOption = None,
    under: Annotated[str | None, typer.Option(help="Only under this directory.",
                                              show_default=False)] = None,
    after: Annotated[str | None, typer.Option(help="Modified at or after (ISO 8601).",
                                              show_default=False)] = None,
    before: Annotated[str | None, typer.Option(help="Modified before (ISO 8601).",
                                               show_default=False)] = None,
    min_size: Annotated[str | None, typer.Option(help="At least this size, e.g. 10MB.",
                                                 show_default=False)] = None,
    max_size: Annotated[str | None, typer.Option(help="At most this size.",
                                                 show_default=False)] = None,
    archived: Annotated[bool, typer.Option("--archived", help="Archived files too.")] = False,
    limit: LimitOption = None, as_json: JsonOption = False, url: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Find files you may read by name, tags, metadata, time and size."""
    smallest = parse_option(parse_size, min_size, "--min-size")
    largest = parse_option(parse_size, max_size, "--max-size")
    items = call(url, api_key, lambda c: c.datalake.search(
        name, tags=tag or (), metadata=parse_pairs(meta, "--meta"), after=after, before=before,
        min_size=smallest, max_size=largest, under=under, archived=archived, limit=limit))
    _listing(items, as_json, "no files match")


@app.command()
def tag(
    path: PathArg,
    add: Annotated[list[str] | None, typer.Option("--add", help="Add a tag (repeatable).",
                                                  show_default=False)] = None,
    remove: Annotated[list[str] | None, typer.Option(
        "--remove", help="Remove a tag (repeatable).", show_default=False)] = None,
    meta: MetaOption = None, as_json: JsonOption = False, url: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Add or remove tags, or set metadata key=value pairs, of a file."""
    if not (add or remove or meta):
        raise Invalid("nothing to change: give --add, --remove or --meta")
    updated = call(url, api_key, lambda c: c.datalake.update(
        path, add_tags=add, remove_tags=remove,
        metadata=parse_pairs(meta, "--meta") if meta else None))
    if as_json:
        write_out(json_line(updated))
    else:
        stderr.print(f"{path}: tags {', '.join(updated.get('tags') or []) or '(none)'}",
                     markup=False)


@app.command()
def share(
    path: PathArg,
    user: Annotated[str, typer.Argument(help="The user to share with.", show_default=False)],
    write: Annotated[bool, typer.Option("--write", help="Also let them overwrite, append "
                                        "and change metadata.")] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Also let them delete, archive and "
                                        "share it onward.")] = False,
    url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Share a file or a directory (everything under it) with a user; what they create
    there stays yours, and unsharing ends their access."""
    permission = "admin" if admin else "write" if write else "read"
    call(url, api_key, lambda c: c.datalake.share(path, user, permission))
    stderr.print(f"shared {path} with {user} ({permission})", markup=False)


@app.command()
def unshare(
    path: PathArg,
    user: Annotated[str, typer.Argument(help="The user to stop sharing with.",
                                        show_default=False)],
    url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Stop sharing a file or directory with a user."""
    call(url, api_key, lambda c: c.datalake.unshare(path, user))
    stderr.print(f"stopped sharing {path} with {user}", markup=False)


@app.command()
def shares(
    path: Annotated[str | None, typer.Argument(help="A file or directory (default: all "
                                               "yours).", show_default=False)] = None,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """List shares."""
    show_records(call(url, api_key, lambda c: c.datalake.shares(path)), as_json, None,
                 "no shares")


@app.command()
def relate(
    source: Annotated[str, typer.Argument(metavar="FROM", help="The file that relates.",
                                          show_default=False)],
    target: Annotated[str, typer.Argument(metavar="TO", help="The file it relates to.",
                                          show_default=False)],
    label: Annotated[str, typer.Option(help="derived_from (FROM was made from TO) or any "
                                       "label.")] = "derived_from",
    url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Record a relation between two files."""
    call(url, api_key, lambda c: c.datalake.relate(source, target, label))
    stderr.print(f"{source} {label} {target}", markup=False)


@app.command()
def lineage(
    path: PathArg,
    down: Annotated[bool, typer.Option("--down", help="What derives from PATH (default: "
                                       "what PATH derives from).")] = False,
    depth: Annotated[int, typer.Option(help="How many steps to follow.")] = 10,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Show a file's lineage through derived_from relations."""
    answer = call(url, api_key, lambda c: c.datalake.lineage(
        path, direction="down" if down else "up", depth=depth))
    if as_json:
        write_out(json_line(answer))
        return
    show_records(answer.get("edges") or [], False, ("from", "label", "to"),
                 f"{path} has no lineage {'downstream' if down else 'upstream'}")


@app.command()
def table(
    path: PathArg,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 20,
    as_json: JsonOption = False, url: ServerOption = None, api_key: ApiKeyOption = None,
) -> None:
    """Show a CSV, Parquet or JSON-lines file as a table."""
    answer = call(url, api_key, lambda c: c.datalake.table(path, limit=limit))
    if as_json:
        write_out(json_line(answer))
        return
    columns = answer["columns"]
    show_records([dict(zip(columns, row, strict=False)) for row in answer["rows"]], False,
                 columns, f"{path} has no rows")
    total = answer.get("total_rows")
    if isinstance(total, int) and total > len(answer["rows"]):
        stderr.print(f"first {len(answer['rows']):,} of {total:,} rows (--limit)", markup=False)


__all__ = ["app"]
