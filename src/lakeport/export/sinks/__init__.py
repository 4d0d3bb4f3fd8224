"""Sinks by URL scheme: ``open_sink("s3://bucket/prefix")``.

Third parties add sinks through the ``lakeport.sinks`` entry point group (name = scheme).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from lakeport.errors import Invalid
from lakeport.export.sinks.base import Batch, Sink

_AZURE = ("azure.storage.blob", "azure.identity")

# scheme -> (module:class, pip extra or None, the extra's packages the sink imports)
_BUILTIN: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "file": ("lakeport.export.sinks.local:LocalSink", None, ()),
    "s3": ("lakeport.export.sinks.s3:S3Sink", "s3", ("s3fs",)),
    "abfs": ("lakeport.export.sinks.adls:AdlsSink", "azure", _AZURE),
    "abfss": ("lakeport.export.sinks.adls:AdlsSink", "azure", _AZURE),
    "dbfs": ("lakeport.export.sinks.databricks:DatabricksVolumeSink", "databricks",
             ("databricks.sdk",)),
    "delta+file": ("lakeport.export.sinks.delta:DeltaSink", "delta", ("deltalake",)),
    "delta+s3": ("lakeport.export.sinks.delta:DeltaSink", "delta,s3", ("deltalake", "s3fs")),
    "table": ("lakeport.export.sinks.table:TableSink", "delta", ("deltalake",)),
}


def known_sink_schemes() -> list[str]:
    plugins = {ep.name for ep in entry_points(group="lakeport.sinks")}
    return sorted(set(_BUILTIN) | plugins)


def _sink_class(scheme: str) -> type[Sink]:
    for ep in entry_points(group="lakeport.sinks"):
        if ep.name == scheme:
            return ep.load()
    if scheme not in _BUILTIN:
        listed = ", ".join(
            f"{s}://" + (f" (pip install 'lakeport[{_BUILTIN[s][1]}]')" if _BUILTIN[s][1] else "")
            for s in sorted(_BUILTIN)
        )
        raise Invalid(f"unknown sink URL scheme {scheme!r}: use one of {listed}")
    target, extra, requires = _BUILTIN[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        for package in requires:
            importlib.import_module(package)
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f": pip install 'lakeport[{extra}]'" if extra else ""
        raise Invalid(
            f"the {scheme}:// sink needs a missing package ({exc.name}){hint}"
        ) from exc
    return getattr(module, class_name)


def open_sink(url: str, options: dict[str, Any] | None = None) -> Sink:
    """The sink for ``url`` (not yet opened: ``async with open_sink(url) as sink``)."""
    scheme = urlsplit(url).scheme if "://" in url or url.startswith("dbfs:") else ""
    if url.startswith("dbfs:/"):
        scheme = "dbfs"
    if not scheme:
        raise Invalid(
            f"bad sink URL {url!r}: expected scheme://..., one of "
            + ", ".join(f"{s}://" for s in known_sink_schemes())
        )
    return _sink_class(scheme)(url, options)


__all__ = ["Batch", "Sink", "known_sink_schemes", "open_sink"]
