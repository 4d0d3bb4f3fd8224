"""Engines are chosen by URL scheme: ``open_engine("file:///var/lib/lakeport")``.

Third parties add engines through the ``lakeport.engines`` entry point group
(name = scheme, value = ``module:EngineClass``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from urllib.parse import urlsplit

from lakeport.errors import Invalid
from lakeport.home import default_streams_url
from lakeport.streams.base import Engine

# scheme -> (module:class, extra that provides its dependencies or None)
_BUILTIN: dict[str, tuple[str, str | None]] = {
    "file": ("lakeport.streams.embedded:EmbeddedEngine", None),
    "memory": ("lakeport.streams.memory:MemoryEngine", None),
    "nats": ("lakeport.streams.jetstream:JetStreamEngine", "nats"),
    "http": ("lakeport.streams.remote:RemoteEngine", None),
    "https": ("lakeport.streams.remote:RemoteEngine", None),
}
_REGISTERED: dict[str, type[Engine]] = {}


def register_engine(scheme: str, engine: type[Engine]) -> None:
    """Make ``scheme://`` URLs open ``engine``."""
    _REGISTERED[scheme] = engine


def known_schemes() -> list[str]:
    plugins = {ep.name for ep in entry_points(group="lakeport.engines")}
    return sorted(set(_BUILTIN) | set(_REGISTERED) | plugins)


def _engine_class(scheme: str) -> type[Engine]:
    if scheme in _REGISTERED:
        return _REGISTERED[scheme]
    for ep in entry_points(group="lakeport.engines"):
        if ep.name == scheme:
            return ep.load()
    if scheme not in _BUILTIN:
        raise Invalid(
            f"unknown streams URL scheme {scheme!r}: use one of "
            + ", ".join(f"{s}://" for s in known_schemes())
        )
    target, extra = _BUILTIN[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f": pip install 'lakeport[{extra}]'" if extra else ""
        raise Invalid(f"the {scheme}:// engine needs a missing package ({exc.name}){hint}") from exc
    return getattr(module, class_name)


def open_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: ``LAKEPORT_STREAMS`` or the embedded engine).

    The engine connects when entered: ``async with open_engine(url) as engine: ...``.
    """
    url = url or default_streams_url()
    parts = urlsplit(url)
    if not parts.scheme or ("://" not in url and not url.startswith("memory:")):
        raise Invalid(
            f"bad streams URL {url!r}: expected scheme://..., one of "
            + ", ".join(f"{s}://" for s in known_schemes())
        )
    return _engine_class(parts.scheme)(url)
