"""Tests of the app's own logic: run them with ``python -m pytest test_app.py``."""

from __future__ import annotations

from lakeport.apps import Number, Recommendation

from main import TemperatureMonitor


def reading(value: float, asset: str = "asset-01") -> Number:
    return Number(asset=asset, datastream="temperature", value=value, unit="°C")


def test_publishes_the_rolling_mean_per_asset() -> None:
    monitor = TemperatureMonitor(window=3, threshold=100)
    means = [monitor.process(reading(value))[0].value for value in (10, 20, 30, 40)]
    assert means == [10, 15, 20, 30]
    other = monitor.process(reading(50, asset="asset-02"))[0]
    assert (other.asset, other.datastream, other.value, other.unit) == \
        ("asset-02", "temperature_avg", 50, "°C")
    assert monitor.received == 5


def test_recommends_once_when_the_mean_crosses_the_threshold() -> None:
    monitor = TemperatureMonitor(window=2, threshold=75)
    outputs = [monitor.process(reading(value)) for value in (70, 80, 90, 95, 60, 50, 90, 95)]
    recommended = [i for i, out in enumerate(outputs)
                   if any(isinstance(m, Recommendation) for m in out)]
    # means: 70, 75, 85, 92.5, 77.5, 55, 70, 92.5 → above 75 at 2 and again at 7
    assert recommended == [2, 7]
    assert outputs[2][1].kind == "temperature_high"


def test_configuration_changes_window_and_threshold() -> None:
    monitor = TemperatureMonitor(window=5, threshold=75)
    for value in (10, 20, 30):
        monitor.process(reading(value))
    monitor.configure({"window": 2, "threshold": 10})
    out = monitor.process(reading(40))
    assert out[0].value == 35  # mean of the last two: 30 and 40
    assert isinstance(out[1], Recommendation)
