"""The curated public API stays complete and importable."""

import lakeport
import lakeport.errors
import lakeport.streams


def test_every_exported_name_resolves() -> None:
    for module in (lakeport, lakeport.streams, lakeport.errors):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{module.__name__}.__all__ names missing objects: {missing}"


def test_every_error_is_exported_at_the_top() -> None:
    assert set(lakeport.errors.__all__) <= set(lakeport.__all__)


def test_the_topic_api_users_need_is_exported_at_the_top() -> None:
    needed = {"open_engine", "Engine", "Producer", "Consumer", "Message", "Position", "Filters",
              "Mode", "Format", "Persistence", "TopicOptions", "TopicInfo", "EndMarker",
              "EndOfTopic"}
    assert needed <= set(lakeport.__all__)
    assert needed <= set(lakeport.streams.__all__)
