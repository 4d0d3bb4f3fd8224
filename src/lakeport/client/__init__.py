"""The Python client of the lakeport server: observations, data-lake files and topics.

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

from lakeport.client.config import ClientConfig
from lakeport.client.core import Client
from lakeport.client.errors import ClientError, ServerError
from lakeport.client.results import Page
from lakeport.client.sync import SyncClient

__all__ = ["Client", "ClientConfig", "ClientError", "Page", "ServerError", "SyncClient"]
