"""The embedded durable engine (``file:///path``), the default."""

from lakeport.streams.embedded.engine import EmbeddedEngine

__all__ = ["EmbeddedEngine"]
