"""Where file bytes live, chosen by the lake URL: ``file:///folder`` (the default, see
:mod:`.local`), ``s3://bucket/prefix`` or ``abfs://container@account/prefix`` (see
:mod:`.remote`). ``await lake_for(url).open()`` gives a checked :class:`Lake`."""

from __future__ import annotations

from urllib.parse import urlsplit

from lakeport.errors import Invalid
from lakeport.server.files.lake.base import CHUNK, Lake, new_key
from lakeport.server.files.lake.local import LocalLake
from lakeport.server.files.lake.remote import RemoteLake

_BACKENDS: dict[str, type[Lake]] = {
    "file": LocalLake, "s3": RemoteLake, "abfs": RemoteLake, "abfss": RemoteLake,
}


def lake_for(url: str) -> Lake:
    """The lake for ``url``, not yet checked (``await lake_for(url).open()``)."""
    backend = _BACKENDS.get(urlsplit(url).scheme)
    if backend is None:
        raise Invalid(f"bad lake URL {url!r}: use file:///folder, s3://bucket/prefix "
                      "or abfs://container@account/prefix")
    return backend(url)


__all__ = ["CHUNK", "Lake", "LocalLake", "RemoteLake", "lake_for", "new_key"]
