"""The async client: one connection pool, its services."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from lakeport.client.config import ClientConfig
from lakeport.client.datalake import Datalake
from lakeport.client.grants import Grants
from lakeport.client.http import Http
from lakeport.client.observations import Observations
from lakeport.client.routing import Routing
from lakeport.client.tasks import Tasks
from lakeport.client.topics import Topics
from lakeport.client.workflows import Workflows


class Client:
    """A lakeport server, reached with an API key.

    >>> async with Client("http://127.0.0.1:8400", "lpk_...") as client:
    ...     frame = await client.observations.query("pump-1", format="dataframe")

    ``timeout``, ``retries`` and the other :class:`ClientConfig` fields may be given as
    keywords, or a whole ``config``; ``transport`` replaces httpx's network transport.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 config: ClientConfig | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 **settings: Any) -> None:
        from lakeport.client.config import build

        values = config.model_dump() if config is not None else {}
        values.update({k: v for k, v in (("url", url), ("api_key", api_key)) if v is not None})
        values.update(settings)
        self.config = build(values, "client settings")
        self._http = Http(self.config, transport)
        self.observations = Observations(self._http)
        self.datalake = Datalake(self._http)
        self.topics = Topics(self._http)
        self.grants = Grants(self._http)
        self.tasks = Tasks(self._http)
        self.workflows = Workflows(self._http)
        self.routing = Routing(self._http)

    @classmethod
    def from_env(cls, *, transport: httpx.AsyncBaseTransport | None = None,
                 **settings: Any) -> Client:
        """A client from ``LAKEPORT_URL`` and ``LAKEPORT_API_KEY``, else
        ``$LAKEPORT_HOME/client.json``; keywords override both."""
        return cls(config=ClientConfig.from_env(**settings), transport=transport)

    @property
    def url(self) -> str:
        return self._http.url

    async def me(self) -> str:
        """The user name of this client's API key."""
        return str((await self._http.json("GET", "/me"))["user"])

    async def health(self) -> dict[str, Any]:
        """The server's ``/health`` answer (needs no key)."""
        return await self._http.json("GET", f"{self._http.url}/health")

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"


__all__ = ["Client"]
