"""``SyncClient``: the async client driven from plain code, on an event loop in a private thread.

Every coroutine method of the async client becomes a blocking call, every async iterator a
plain iterator; nothing is written twice.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from types import TracebackType
from typing import Any

import httpx

from lakeport.client.config import ClientConfig
from lakeport.client.core import Client


class _Loop:
    """An event loop running in a daemon thread; coroutines are handed to it and awaited."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lakeport-client",
                                       daemon=True)
        self.thread.start()

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise RuntimeError("a SyncClient cannot be used from its own event loop; "
                               "use the async Client there")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def iterate(self, iterator: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self.call(anext(iterator))  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None and self.loop.is_running():
                self.call(closer())

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


class _Blocking:
    """Wraps an object of the async client: coroutines run to their result, async iterators
    become iterators, sub-services are wrapped in turn, other attributes pass through."""

    def __init__(self, target: Any, loop: _Loop) -> None:
        self._target = target
        self._loop = loop

    def _convert(self, value: Any) -> Any:
        if inspect.iscoroutine(value):
            return self._convert(self._loop.call(value))
        if isinstance(value, AsyncIterator):
            return self._loop.iterate(value)
        return value

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_"):
            return value
        if callable(value) and not isinstance(value, type):
            def call(*args: Any, **kwargs: Any) -> Any:
                return self._convert(value(*args, **kwargs))

            call.__name__ = name
            call.__doc__ = value.__doc__
            return call
        if getattr(type(value), "__module__", "").startswith("lakeport.client."):
            return _Blocking(value, self._loop)
        return value

    def __dir__(self) -> list[str]:
        return [name for name in dir(self._target) if not name.startswith("_")]

    def __repr__(self) -> str:
        return f"Sync{self._target!r}"


class SyncClient(_Blocking):
    """A blocking client with the same methods as :class:`Client`.

    >>> with SyncClient("http://127.0.0.1:8400", "lpk_...") as client:
    ...     print(client.observations.latest(sensor="pump-1", format="table"))
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 config: ClientConfig | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 **settings: Any) -> None:
        loop = _Loop()
        try:
            client = loop.call(_make(url, api_key, config, transport, settings))
        except BaseException:
            loop.stop()
            raise
        super().__init__(client, loop)

    @classmethod
    def from_env(cls, *, transport: httpx.AsyncBaseTransport | None = None,
                 **settings: Any) -> SyncClient:
        """Like :meth:`Client.from_env`."""
        return cls(config=ClientConfig.from_env(**settings), transport=transport)

    @property
    def client(self) -> Client:
        """The async client underneath."""
        return self._target

    def close(self) -> None:
        """Close the connections and stop the private event loop."""
        if self._loop.loop.is_closed():
            return
        try:
            self._loop.call(self._target.aclose())
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


async def _make(url: str | None, api_key: str | None, config: ClientConfig | None,
                transport: httpx.AsyncBaseTransport | None, settings: dict[str, Any]) -> Client:
    return Client(url, api_key, config=config, transport=transport, **settings)


__all__ = ["SyncClient"]
