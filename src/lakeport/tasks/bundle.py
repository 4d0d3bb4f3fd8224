"""Safe handling of the zips a task comes with (its dependencies, its inputs).

:func:`check_zip` reads only the central directory and refuses, with one line naming the
part (``what``) and the member: a file that is not a zip, a member that would land outside
its folder (``../x``, ``/etc/x``, ``C:x``), a symlink, more than ``max_files`` members, a
declared unpacked size over ``max_bytes`` or a compression ratio over :data:`MAX_RATIO` (a
zip bomb). :func:`extract_zip` checks first, then unpacks member by member and counts the
bytes it really writes, so a member whose header lies about its size is caught too.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from lakeport.errors import Invalid

MAX_UNPACKED = 1 << 30  # bytes
MAX_FILES = 10_000
MAX_RATIO = 200  # unpacked / packed, over the whole zip
RATIO_FLOOR = 1 << 20  # a zip that unpacks to less than this is never called a bomb
CHUNK = 1 << 20


def check_zip(path: Path, *, what: str, max_bytes: int = MAX_UNPACKED,
              max_files: int = MAX_FILES) -> list[str]:
    """The names of the zip's members, after checking it is safe to unpack."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise Invalid(f"{what} is not a zip file") from None
    except OSError as exc:
        raise Invalid(f"{what}: cannot read it ({exc.strerror or exc})") from None
    _check_infos(infos, what=what, max_bytes=max_bytes, max_files=max_files)
    return [info.filename for info in infos]


def extract_zip(path: Path, dest: Path, *, what: str, max_bytes: int = MAX_UNPACKED,
                max_files: int = MAX_FILES) -> None:
    """Unpack the zip into ``dest`` (created), enforcing the limits while writing."""
    check_zip(path, what=what, max_bytes=max_bytes, max_files=max_files)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            target = root.joinpath(*_parts(info.filename, what))
            if not target.resolve().is_relative_to(root):  # a symlink already on disk
                raise Invalid(f"{what}: member {info.filename!r} escapes its folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as source, target.open("wb") as sink:
                    while chunk := source.read(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise Invalid(f"{what} unpacks to more than {max_bytes} bytes "
                                          f"(at member {info.filename!r})")
                        sink.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
                    RuntimeError) as exc:
                raise Invalid(f"{what}: member {info.filename!r} is damaged "
                              f"({_reason(exc)})") from None
            if (info.external_attr >> 16) & 0o111:
                target.chmod(0o755)


def _check_infos(infos: list[zipfile.ZipInfo], *, what: str, max_bytes: int,
                 max_files: int) -> None:
    if len(infos) > max_files:
        raise Invalid(f"{what} has {len(infos)} members, more than the limit of {max_files}")
    unpacked = packed = 0
    for info in infos:
        _parts(info.filename, what)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise Invalid(f"{what}: member {info.filename!r} is a symlink (not allowed)")
        unpacked += info.file_size
        packed += info.compress_size
    if unpacked > max_bytes:
        raise Invalid(f"{what} unpacks to {unpacked} bytes, more than the limit of "
                      f"{max_bytes}")
    if unpacked > RATIO_FLOOR and unpacked > MAX_RATIO * max(packed, 1):
        raise Invalid(f"{what} looks like a zip bomb: it unpacks {unpacked // max(packed, 1)} "
                      f"times its size (the limit is {MAX_RATIO})")


def _parts(name: str, what: str) -> tuple[str, ...]:
    """The path parts of a member name; Invalid when it would leave its folder."""
    normal = name.replace("\\", "/")
    pure = PurePosixPath(normal)
    if (normal.startswith("/") or (len(normal) > 1 and normal[1] == ":")
            or ".." in pure.parts or "\0" in normal):
        raise Invalid(f"{what}: member {name!r} escapes its folder")
    parts = tuple(part for part in pure.parts if part not in ("", "."))
    if not parts:
        raise Invalid(f"{what}: member {name!r} has no name")
    return parts


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["MAX_FILES", "MAX_RATIO", "MAX_UNPACKED", "check_zip", "extract_zip"]
