"""lakeport: move industrial sensor data from the edge into data lakes."""

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
    """The platform client is imported on first use (``lakeport.Client``)."""
    if name in ("Client", "SyncClient"):
        import lakeport.client

        return getattr(lakeport.client, name)
    raise AttributeError(f"module 'lakeport' has no attribute {name!r}")
