"""The rolling mean of each asset's temperature, and a recommendation when it runs hot.

Reads the data stream input ``temperature`` (number, °C) of every asset, publishes the
output ``temperature_avg`` (the mean of the last ``window`` values) for each value read, and
a ``Recommendation`` each time an asset's mean rises above ``threshold``. Both options come
from the configuration (schemas/configuration.json) and can change while the app runs.

Run it with ``lakeport app run .`` and feed it with ``lakeport app test simulator .``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from typing import Any

from lakeport.apps import App, AppMessage, Number, Recommendation

logger = logging.getLogger("app")


class TemperatureMonitor:
    """Rolling means per asset; notices when a mean crosses the threshold upwards."""

    def __init__(self, window: int = 10, threshold: float = 75.0) -> None:
        self.window = window
        self.threshold = threshold
        self.received = 0
        self._values: dict[str, deque[float]] = {}
        self._hot: dict[str, bool] = {}

    def configure(self, configuration: dict[str, Any]) -> None:
        """Take ``window`` and ``threshold`` from the app's configuration."""
        self.window = int(configuration.get("window", self.window))
        self.threshold = float(configuration.get("threshold", self.threshold))
        self._values = {asset: deque(values, maxlen=self.window)
                        for asset, values in self._values.items()}

    def process(self, message: Number) -> list[AppMessage]:
        """The messages to publish for one temperature value."""
        self.received += 1
        values = self._values.setdefault(message.asset, deque(maxlen=self.window))
        values.append(message.value)
        mean = sum(values) / len(values)
        outputs: list[AppMessage] = [
            Number(asset=message.asset, datastream="temperature_avg", value=round(mean, 3),
                   unit=message.unit, time=message.time),
        ]
        hot = mean > self.threshold
        if hot and not self._hot.get(message.asset, False):
            outputs.append(Recommendation(
                asset=message.asset, kind="temperature_high", time=message.time,
                description=f"mean temperature {mean:.1f} is above {self.threshold:g}: "
                            "check the cooling",
            ))
        self._hot[message.asset] = hot
        return outputs


def build(app: App) -> TemperatureMonitor:
    """Wire the monitor to the app's input, output and configuration."""
    monitor = TemperatureMonitor()
    monitor.configure(app.app_configuration)

    @app.stream(inputs=["temperature"])
    async def on_temperature(message: Number) -> None:
        for output in monitor.process(message):
            await app.publish(output)

    def on_configuration(configuration: dict[str, Any]) -> None:
        monitor.configure(configuration)
        logger.info("window %d, threshold %g", monitor.window, monitor.threshold)

    app.on_app_configuration = on_configuration
    return monitor


async def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = App()
    monitor = build(app)
    await app.run()  # until SIGTERM or Ctrl-C
    print(f"received {monitor.received} messages", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
