"""Import readings from temperature controllers and apply setpoint control changes to them.

Every ``poll_interval`` seconds each controller (``asset-01`` … ``asset-NN``) is read and its
``temperature`` and ``setpoint`` are published as ``Number`` data to ``asset-data``. A
``ControlChange`` for ``setpoint`` moves a controller's setpoint; its temperature then drifts
towards it. The controllers are simulated here: replace ``SimulatedController`` with the
client of a real device.

Run it with ``lakeport app run .`` and send it control changes with
``lakeport app test simulator .``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from datetime import UTC, datetime
from typing import Any

from lakeport.apps import App, ControlChange, Number, filters

logger = logging.getLogger("importer")


class SimulatedController:
    """A temperature controller: the temperature follows the setpoint, with some noise."""

    def __init__(self, temperature: float = 50.0, seed: int | None = None) -> None:
        self.temperature = temperature
        self.setpoint = temperature
        self._random = random.Random(seed)

    def read(self) -> dict[str, float]:
        """One reading: the temperature moves 20% of the way to the setpoint, plus noise."""
        self.temperature += 0.2 * (self.setpoint - self.temperature)
        self.temperature += self._random.gauss(0, 0.3)
        return {"temperature": round(self.temperature, 3), "setpoint": self.setpoint}

    def write(self, datastream: str, value: Any) -> None:
        """Apply a control change; ValueError if the controller has no such setting."""
        if datastream != "setpoint":
            raise ValueError(f"no writable datastream {datastream!r} (only setpoint)")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"setpoint must be a number, got {value!r}")
        self.setpoint = float(value)


class Importer:
    """Polls the controllers into messages and applies control changes to them."""

    def __init__(self, assets: int = 10, start_temperature: float = 50.0) -> None:
        self.controllers = {f"asset-{n:02d}": SimulatedController(start_temperature, seed=n)
                            for n in range(1, assets + 1)}
        self.published = 0
        self.received = 0
        self.applied = 0

    def poll(self) -> list[Number]:
        """A ``Number`` for every datastream of every controller, all with the same time."""
        now = datetime.now(UTC)
        readings = [
            Number(asset=asset, datastream=name, value=value, unit="°C", time=now)
            for asset, controller in self.controllers.items()
            for name, value in controller.read().items()
        ]
        self.published += len(readings)
        return readings

    def apply(self, change: ControlChange) -> bool:
        """Apply ``change`` to its controller; False (logged) if it cannot be applied."""
        self.received += 1
        controller = self.controllers.get(change.asset)
        if controller is None:
            logger.warning("control change %s ignored: unknown asset %s", change.id,
                           change.asset)
            return False
        if change.expiration <= datetime.now(UTC):
            logger.warning("control change %s ignored: expired at %s", change.id,
                           change.expiration.isoformat())
            return False
        try:
            controller.write(change.datastream, change.value)
        except ValueError as exc:
            logger.warning("control change %s for %s ignored: %s", change.id, change.asset, exc)
            return False
        self.applied += 1
        logger.info("%s: %s set to %s", change.asset, change.datastream, change.value)
        return True


def build(app: App) -> Importer:
    """Wire the importer to the app: a polling timer and a control change handler."""
    configuration = app.app_configuration
    importer = Importer(assets=int(configuration.get("assets", 10)),
                        start_temperature=float(configuration.get("start_temperature", 50)))

    @app.timer(interval=float(configuration.get("poll_interval", 1)))
    async def poll() -> None:
        for reading in importer.poll():
            await app.publish(reading)

    @app.stream(filter=filters.is_control_change)
    async def on_control_change(change: ControlChange) -> None:
        importer.apply(change)

    return importer


async def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = App()
    importer = build(app)
    await app.run()  # until SIGTERM or Ctrl-C
    print(f"published {importer.published} messages", flush=True)
    print(f"received {importer.received} messages ({importer.applied} control changes applied)",
          flush=True)


if __name__ == "__main__":
    asyncio.run(main())
