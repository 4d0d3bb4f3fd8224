"""The Python client of the lakeport server: observations, data-lake files, topics, tasks and
workflows.

>>> from lakeport.client import SyncClient
>>> client = SyncClient.from_env()          # LAKEPORT_URL, LAKEPORT_API_KEY
>>> client.observations.sensors.create("pump-1")
>>> frame = client.observations.query("pump-1", format="dataframe")

:class:`Client` is the async core (``async with Client(url, key) as client: ...``);
:class:`SyncClient` runs it on a private event loop for plain code. Query methods take
``format="json" | "table" | "dataframe" | "polars"``. Errors are :class:`ClientError` and
the matching :mod:`lakeport.errors` class (``NotFound``, ``Unauthorized``, ``Forbidden``,
``Conflict``, ``Invalid`` with ``.details``, ``Unavailable``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeport.client.config import ClientConfig
    from lakeport.client.core import Client
    from lakeport.client.errors import ClientError, ServerError
    from lakeport.client.results import Page
    from lakeport.client.sync import SyncClient

__all__ = ["Client", "ClientConfig", "ClientError", "Page", "ServerError", "SyncClient"]
_HOMES = {"Client": "core", "ClientConfig": "config", "ClientError": "errors",
          "Page": "results", "ServerError": "errors", "SyncClient": "sync"}


def __getattr__(name: str) -> Any:
    """Each name is imported on first use: a worker that needs only the HTTP core does not
    load the services' modules (numpy, pyarrow)."""
    if name in _HOMES:
        value = getattr(importlib.import_module(f"lakeport.client.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lakeport.client' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
