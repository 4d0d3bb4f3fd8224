"""lakeport: move industrial sensor data from the edge into data lakes."""

from lakeport.allocator import arrow_uses_system_allocator

arrow_uses_system_allocator()  # before anything imports pyarrow


from lakeport.errors import (  # noqa: E402
    Closed,
    Conflict,
    Invalid,
    LakeportError,
    NotFound,
    Terminal,
    Transient,
    Unavailable,
)
from lakeport.streams import (  # noqa: E402
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
    "Closed",
    "Conflict",
    "Consumer",
    "EndMarker",
    "EndOfTopic",
    "Engine",
    "Filters",
    "Format",
    "Invalid",
    "LakeportError",
    "Message",
    "Mode",
    "NotFound",
    "Persistence",
    "Position",
    "Producer",
    "Terminal",
    "TopicInfo",
    "TopicOptions",
    "Transient",
    "Unavailable",
    "__version__",
    "open_engine",
]
