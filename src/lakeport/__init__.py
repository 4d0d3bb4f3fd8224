"""lakeport: move industrial sensor data from the edge into data lakes."""

import importlib
from typing import TYPE_CHECKING

from lakeport.allocator import started_as_command, tune_process

if started_as_command():  # the lakeport command's own process, before pyarrow is imported
    tune_process()


from lakeport.errors import (
    Closed,
    Conflict,
    Forbidden,
    Invalid,
    LakeportError,
    NotFound,
    Terminal,
    TooLarge,
    Transient,
    Unauthorized,
    Unavailable,
)

if TYPE_CHECKING:
    from lakeport.client import Client, SyncClient
    from lakeport.streams import (
        Consumer,
        EndMarker,
        EndOfTopic,
        Engine,
        Filters,
        Format,
        Message,
        Mode,
        Persistence,
        Position,
        Producer,
        TopicInfo,
        TopicOptions,
        open_engine,
    )

# Imported on first use (``lakeport.open_engine``, ``lakeport.Client``): the engines load
# pyarrow and the client httpx, which a command that needs neither should not wait for.
_LAZY = {
    "Client": "lakeport.client",
    "SyncClient": "lakeport.client",
    **dict.fromkeys(
        ("Consumer", "EndMarker", "EndOfTopic", "Engine", "Filters", "Format", "Message",
         "Mode", "Persistence", "Position", "Producer", "TopicInfo", "TopicOptions",
         "open_engine"),
        "lakeport.streams",
    ),
}

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Closed",
    "Conflict",
    "Consumer",
    "EndMarker",
    "EndOfTopic",
    "Engine",
    "Filters",
    "Forbidden",
    "Format",
    "Invalid",
    "LakeportError",
    "Message",
    "Mode",
    "NotFound",
    "Persistence",
    "Position",
    "Producer",
    "SyncClient",
    "Terminal",
    "TooLarge",
    "TopicInfo",
    "TopicOptions",
    "Transient",
    "Unauthorized",
    "Unavailable",
    "__version__",
    "open_engine",
    "tune_process",
]


def __getattr__(name: str) -> object:
    """The stream API and the platform client are imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeport' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
