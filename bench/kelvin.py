"""A vendor-SDK app through lakeport's Kelvin stream, next to the same app on lakeport's SDK.

Run from the repository root: ``python bench/kelvin.py [--messages N] [--json]``.
Both apps read ``temperature`` readings from ``asset-data`` (an embedded topic holding them
already) under ``lakeport app run`` and count them; each notes when its first and its last
message arrived. Rows, measured in the same run:

- Kelvin SDK app: ``kelvin-python-sdk`` 0.5.0 in the app's own environment, fed through the
  stream endpoint (acked once written to the app);
- lakeport SDK app: ``lakeport.apps.App`` reading the topic itself.

msgs/s is the steady rate (first to last message); "to first" is the time from starting
``lakeport app run`` (its environment already built) to the app's first message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lakeport.apps import Number
from lakeport.home import lakeport_home
from lakeport.streams import open_engine

MANIFEST = """\
spec_version: 5.0.0
type: app
name: {name}
title: Counter
description: Counts temperature readings.
version: 1.0.0
data_streams:
  inputs:
    - name: temperature
      data_type: number
"""

COUNTER_APP = """\
import asyncio, json, os, time
from {module} import {app_class}, filters

async def main():
    app = {app_class}()
    await app.connect()
    want, seen, first = int(os.environ["WANT"]), 0, None
    async for message in app.stream_filter(filters.is_data_message):
        first = first or time.time()
        seen += 1
        if seen == want:
            with open(os.environ["OUT_FILE"], "w") as out:
                json.dump({{"first": first, "last": time.time()}}, out)
            os._exit(0)

asyncio.run(main())
"""
KELVIN_APP = COUNTER_APP.format(module="kelvin.application", app_class="KelvinApp")
LAKEPORT_APP = COUNTER_APP.format(module="lakeport.apps", app_class="App")


def make_app(parent: Path, name: str, code: str, requirements: str) -> Path:
    folder = parent / name
    folder.mkdir()
    (folder / "app.yaml").write_text(MANIFEST.format(name=name))
    (folder / "main.py").write_text(code)
    (folder / "requirements.txt").write_text(requirements)
    return folder


async def fill(url: str, messages: int) -> None:
    async with open_engine(url) as engine:
        async with engine.producer("bench", "asset-data") as producer:
            for start in range(0, messages, 10_000):
                await producer.produce_many([
                    Number(asset=f"asset-{i % 10:02d}", datastream="temperature",
                           value=float(i)).to_payload()
                    for i in range(start, min(messages, start + 10_000))])


def run_app(folder: Path, url: str, env: dict[str, str], messages: int) -> dict[str, float]:
    """Build the app's environment (not timed), then time ``lakeport app run`` to the end."""
    lakeport = [sys.executable, "-m", "lakeport.cli"]
    out = folder / "out.json"
    app_env = {**env, "WANT": str(messages), "OUT_FILE": str(out)}
    from lakeport.apps.environment import ensure_environment

    ensure_environment(folder, root=Path(env["LAKEPORT_HOME"]) / "app-envs")
    started = time.time()
    done = subprocess.run([*lakeport, "app", "run", str(folder), "--url", url], env=app_env,
                          capture_output=True, text=True, timeout=600)
    if not out.exists():
        raise SystemExit(f"{folder.name} did not count {messages} messages:\n{done.stderr}")
    times = json.loads(out.read_text())
    return {"rate": messages / max(times["last"] - times["first"], 1e-9),
            "to_first": times["first"] - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        shared = lakeport_home() / "app-envs"  # environments outlive the run
        shared.mkdir(parents=True, exist_ok=True)
        (home / "app-envs").symlink_to(shared, target_is_directory=True)
        env = {**os.environ, "LAKEPORT_HOME": str(home)}
        rows = {}
        for name, code, requirements in (
                ("kelvin-counter", KELVIN_APP, "kelvin-python-sdk==0.5.0\n"),
                ("lakeport-counter", LAKEPORT_APP, "lakeport>=0.1.0\n")):
            url = (root / f"streams-{name}").as_uri()
            asyncio.run(fill(url, args.messages))
            rows[name] = run_app(make_app(root, name, code, requirements), url, env,
                                 args.messages)
    if args.json:
        print(json.dumps(rows))
        return
    table = Table(title=f"{args.messages:,} readings from an embedded topic to an app")
    for column in ("app", "msgs/s", "to first (s)", "vs lakeport SDK"):
        table.add_column(column, justify="left" if column == "app" else "right")
    base = rows["lakeport-counter"]["rate"]
    for name, label in (("kelvin-counter", "Kelvin SDK app (stream endpoint)"),
                        ("lakeport-counter", "lakeport SDK app")):
        row = rows[name]
        table.add_row(label, f"{row['rate']:,.0f}", f"{row['to_first']:.2f}",
                      f"{row['rate'] / base:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
