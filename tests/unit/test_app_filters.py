"""Message filters: what each one selects and how they compose."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lakeport.apps import (
    Boolean,
    ControlChange,
    DataTag,
    Number,
    Object,
    Recommendation,
    String,
    filters,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TEMP = Number(asset="pump-1", datastream="temperature", value=21.5)
SPEED = Number(asset="pump-2", datastream="speed", value=3.0)
STATE = String(asset="pump-1", datastream="state", value="running")
ON = Boolean(asset="pump-2", datastream="on", value=True)
INFO = Object(asset="pump-1", datastream="info", value={"vendor": "acme"})
CHANGE = ControlChange(asset="pump-1", datastream="speed", value=4.0)
ADVICE = Recommendation(asset="pump-2", kind="slow down")
TAG = DataTag(asset="pump-1", tag_name="fault", start=NOW, end=NOW)
ALL = [TEMP, SPEED, STATE, ON, INFO, CHANGE, ADVICE, TAG]


def selected(f: filters.Filter) -> list[object]:
    return [m for m in ALL if f(m)]


def test_type_filters_select_their_kind() -> None:
    assert selected(filters.is_data_message) == [TEMP, SPEED, STATE, ON, INFO]
    assert selected(filters.is_asset_data_message) == [TEMP, SPEED, STATE, ON, INFO]
    assert selected(filters.is_control_change) == [CHANGE]
    assert selected(filters.is_recommendation) == [ADVICE]
    assert selected(filters.is_data_tag) == [TAG]


def test_asset_and_input_filters() -> None:
    assert selected(filters.asset_equals("pump-2")) == [SPEED, ON, ADVICE]
    assert selected(filters.asset_equals(["pump-2", "nope"])) == [SPEED, ON, ADVICE]
    # data streams of data messages and control changes
    assert selected(filters.input_equals("speed")) == [SPEED, CHANGE]
    assert selected(filters.input_equals({"state", "on"})) == [STATE, ON]
    assert selected(filters.resource_equals("pump-1", "speed")) == [CHANGE]


def test_filters_compose_with_and_or_not() -> None:
    pump1_data = filters.is_data_message & filters.asset_equals("pump-1")
    assert selected(pump1_data) == [TEMP, STATE, INFO]
    assert selected(pump1_data | filters.is_recommendation) == [TEMP, STATE, INFO, ADVICE]
    assert selected(~filters.is_data_message) == [CHANGE, ADVICE, TAG]
    assert selected(~(filters.is_data_message | filters.is_data_tag)) == [CHANGE, ADVICE]


def test_plain_functions_mix_in_on_either_side() -> None:
    def hot(message: object) -> bool:
        return isinstance(message, Number) and message.value > 20

    assert selected(filters.is_data_message & hot) == [TEMP]
    assert selected(hot | filters.is_data_tag) == [TEMP, TAG]


def test_filters_name_themselves() -> None:
    combined = filters.is_control_change & ~filters.asset_equals("a")
    assert str(combined) == "(is_control_change & ~asset_equals(['a']))"


def test_bad_filter_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="asset_equals"):
        filters.asset_equals([])
    with pytest.raises(TypeError, match="callable"):
        filters.as_filter(42)  # type: ignore[arg-type]
