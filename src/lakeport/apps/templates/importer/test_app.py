"""Tests of the importer's own logic: run them with ``python -m pytest test_app.py``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lakeport.apps import ControlChange

from main import Importer, SimulatedController


def test_poll_reads_every_controller() -> None:
    importer = Importer(assets=3, start_temperature=20)
    readings = importer.poll()
    assert sorted({r.asset for r in readings}) == ["asset-01", "asset-02", "asset-03"]
    assert sorted({r.datastream for r in readings}) == ["setpoint", "temperature"]
    assert all(r.unit == "°C" for r in readings)
    assert importer.published == 6


def test_temperature_follows_the_setpoint() -> None:
    controller = SimulatedController(temperature=20, seed=1)
    controller.write("setpoint", 80)
    for _ in range(50):
        reading = controller.read()
    assert abs(reading["temperature"] - 80) < 3
    assert reading["setpoint"] == 80


def test_control_changes_are_applied_or_refused() -> None:
    importer = Importer(assets=2, start_temperature=20)
    assert importer.apply(ControlChange(asset="asset-02", datastream="setpoint", value=65))
    assert importer.controllers["asset-02"].setpoint == 65
    refused = [
        ControlChange(asset="asset-09", datastream="setpoint", value=1),
        ControlChange(asset="asset-01", datastream="mode", value="auto"),
        ControlChange(asset="asset-01", datastream="setpoint", value="hot"),
        ControlChange(asset="asset-01", datastream="setpoint", value=1,
                      expiration=datetime.now(UTC) - timedelta(seconds=1)),
    ]
    assert [importer.apply(change) for change in refused] == [False] * 4
    assert importer.controllers["asset-01"].setpoint == 20
    assert (importer.received, importer.applied) == (5, 1)
