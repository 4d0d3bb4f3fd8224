"""Apps written with the vendor's SDK (kelvin-python-sdk 0.5.0) run unchanged under lakeport.

The apps in tests/fixtures/kelvin_apps/ run with ``lakeport app run`` (a subprocess, with the
SDK installed in the app's own environment), get data from ``lakeport app test simulator``,
are reconfigured with ``lakeport app configure`` and answer ``lakeport app action``; the
crash test kills one with SIGKILL mid-stream and counts what it receives again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _kelvin_run import AppRun, Lakeport, gone, payloads

from lakeport.apps import Number
from lakeport.apps.kelvin import RuntimeManifest, from_vendor, to_vendor
from lakeport.apps.kelvin.wire import ActionRequest, ActionResult
from lakeport.apps.manifest import load_manifest
from lakeport.apps.messages import ControlChange, DataTag, Recommendation, String
from lakeport.errors import Invalid
from lakeport.streams import open_engine
from waiting import eventually, wait_until

pytestmark = pytest.mark.timeout(300)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kelvin_apps"
WAIT = 60.0


def copy_app(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


async def topic_info(url: str, topic: str) -> Any:
    async with open_engine(url) as engine:
        return await engine.topic_info(topic)


def readings(url: str, datastream: str) -> list[dict[str, Any]]:
    return [p for p in payloads(url, "asset-data")
            if isinstance(p, dict) and p.get("datastream") == datastream]


@pytest.fixture
def lakeport(kelvin_home: Path, tmp_path: Path) -> Lakeport:
    return Lakeport(kelvin_home, (tmp_path / "streams").as_uri(), tmp_path)


@pytest.fixture
def converter(lakeport: Lakeport, tmp_path: Path) -> Iterator[tuple[Path, AppRun]]:
    """The temperature converter running under ``lakeport app run``."""
    folder = copy_app("temperature-converter", tmp_path)
    run = lakeport.start_app(folder)
    yield folder, run
    run.stop()


def fahrenheit(values: list[dict[str, Any]], threshold: float) -> list[tuple[str, float]]:
    return sorted((v["asset"], round(v["value"] * 9 / 5 + 32, 6)) for v in values
                  if v["value"] * 9 / 5 + 32 > threshold)


def outputs(url: str) -> list[tuple[str, float]]:
    return sorted((v["asset"], round(v["value"], 6)) for v in readings(url, "temperature_f"))


# -- the tests -----------------------------------------------------------------------------
@pytest.mark.slow
def test_simulator_and_csv_data_reach_the_app_and_configure_changes_its_threshold(
        lakeport: Lakeport, converter: tuple[Path, AppRun]) -> None:
    folder, run = converter
    sent = lakeport.run("app", "test", "simulator", str(folder), "--pattern", "ramp",
                        "--rate", "200/s", "--duration", "0.5s", "--assets", "3")
    assert "sent 100 messages to asset-data" in sent.stdout
    first = readings(lakeport.url, "temperature")
    assert wait_until(lambda: run.alive() and len(outputs(lakeport.url)) == 100, WAIT), \
        f"100 °F readings on asset-data; log:\n{run.output()}"
    assert outputs(lakeport.url) == fahrenheit(first, -1000)
    units = {v["unit"] for v in readings(lakeport.url, "temperature_f")}
    assert units == {"°F"}, "the unit of the app's output stream, from app.yaml"

    lakeport.run("app", "configure", str(folder), "--set", "threshold=60")
    answer = lambda: json.loads(lakeport.run(  # noqa: E731
        "app", "action", str(folder), "report-threshold", "--timeout", "20s").stdout)
    assert wait_until(lambda: answer()["response"]["threshold"] == 60, WAIT), \
        "the app's app_configuration has the new threshold"

    lakeport.run("app", "test", "simulator", str(folder), "--pattern", "ramp", "--rate",
                 "200/s", "--duration", "0.5s", "--assets", "3")
    second = readings(lakeport.url, "temperature")[len(first):]
    expected = sorted(fahrenheit(first, -1000) + fahrenheit(second, 60))
    assert 0 < len(fahrenheit(second, 60)) < len(second), "the ramp crosses the threshold"
    assert wait_until(lambda: run.alive() and outputs(lakeport.url) == expected, WAIT), \
        f"only readings above 60 °F after the change; log:\n{run.output()}"

    # lakeport app test csv feeds it as the simulator does
    rows = [(f"2026-01-01T00:00:0{i}Z", f"asset-0{i % 2 + 1}", "temperature", 10 * i)
            for i in range(6)]
    csv = folder.parent / "readings.csv"
    csv.write_text("time,asset,datastream,value\n"
                   + "".join(f"{t},{a},{d},{v}\n" for t, a, d, v in rows))
    assert "sent 6 messages" in lakeport.run("app", "test", "csv", str(folder), str(csv)).stdout
    expected += fahrenheit([{"asset": a, "value": v} for _, a, _, v in rows], 60)
    assert wait_until(lambda: run.alive() and outputs(lakeport.url) == sorted(expected),
                      WAIT), f"each CSV reading above 60 °F converted; log:\n{run.output()}"

    assert run.stop() == 0, f"SIGTERM stops the app, lakeport exits with its code:\n" \
        f"{run.output()}"
    info = asyncio.run(topic_info(lakeport.url, "asset-data"))
    acked = {c.name: c.acked for c in info.consumers}
    assert acked["temperature-converter"] == info.last_seqno, "every message acked at the stop"


@pytest.mark.slow
def test_custom_action_round_trip(lakeport: Lakeport,
                                  converter: tuple[Path, AppRun]) -> None:
    folder, run = converter
    done = None

    def answered() -> bool:
        nonlocal done
        run.alive()
        done = lakeport.run("app", "action", str(folder), "report-threshold", "--payload",
                            '{"level": 2}', "--asset", "asset-02", "--timeout", "10s",
                            check=False)
        return done.returncode == 0

    assert wait_until(answered, WAIT), f"an answer; log:\n{run.output()}"
    assert done is not None
    result = json.loads(done.stdout)
    assert result["success"] is True
    assert result["message"] == "done"
    assert result["response"] == {"threshold": -1000, "echo": {"level": 2}}
    assert result["resource"] == "krn:asset:asset-02"

    unknown = lakeport.run("app", "action", str(folder), "reboot", check=False)
    assert unknown.returncode == 1
    assert "takes no custom action 'reboot'" in unknown.stderr


@pytest.mark.slow
def test_an_action_for_an_app_that_is_not_running_times_out_clearly(
        lakeport: Lakeport, tmp_path: Path) -> None:
    folder = copy_app("temperature-converter", tmp_path)
    done = lakeport.run("app", "action", str(folder), "report-threshold", "--timeout", "1s",
                        check=False)
    assert done.returncode == 1
    assert "no result from temperature-converter" in done.stderr
    assert "is it running" in done.stderr


@pytest.mark.slow
def test_control_changes_reach_the_app_and_the_ones_it_sends_land(lakeport: Lakeport,
                                                                    tmp_path: Path) -> None:
    folder = copy_app("valve-controller", tmp_path)
    run = lakeport.start_app(folder, "--asset", "pump-1")

    async def send() -> None:
        async with open_engine(lakeport.url) as engine:
            async with engine.producer("operator", "control-changes") as producer:
                await producer.produce(ControlChange(asset="pump-1", datastream="setpoint",
                                                     value=21.0).to_payload())
                await producer.produce(ControlChange(asset="pump-9", datastream="setpoint",
                                                     value=1.0).to_payload())

    def acked(topic: str) -> int:
        info = asyncio.run(topic_info(lakeport.url, topic))
        return next((c.acked for c in info.consumers if c.name == "valve-controller"), 0)

    def valves() -> list[dict[str, Any]]:
        return [p for p in payloads(lakeport.url, "control-changes")
                if p.get("datastream") == "valve"]

    try:
        asyncio.run(send())
        assert wait_until(lambda: run.alive() and valves(), WAIT), run.output()
        assert wait_until(lambda: acked("control-changes") == 3, WAIT), \
            "all three acked: pump-9 is not one of its assets, so its change is skipped"
    finally:
        assert run.stop() == 0
    [valve] = valves()
    assert (valve["type"], valve["asset"], valve["value"], valve["retries"]) == \
        ("control_change", "pump-1", 42.0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["app", "lakeport"])
def test_killed_exporter_gets_every_unacked_reading_again(lakeport: Lakeport, tmp_path: Path,
                                                          killed: str) -> None:
    """kill -9 of the app (or of ``lakeport app run``, which takes the app with it) mid-stream
    with --ack-after: nothing is lost, only what was not acked comes again (same id), and
    that is at most --max-in-flight readings."""
    folder = copy_app("reading-recorder", tmp_path)
    out, pid_file = tmp_path / "received.jsonl", tmp_path / "pid"
    count, in_flight = 200, 40

    async def publish() -> None:
        async with open_engine(lakeport.url) as engine:
            async with engine.producer("sensor", "asset-data") as producer:
                await producer.produce_many([
                    Number(asset="asset-01", datastream="temperature", value=i).to_payload()
                    for i in range(count)])

    asyncio.run(publish())

    def received() -> list[dict[str, Any]]:
        text = out.read_text() if out.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    options = ("--ack-after", "1s", "--max-in-flight", str(in_flight))
    env = {"OUT_FILE": str(out), "PID_FILE": str(pid_file)}
    first = lakeport.start_app(folder, *options, **env)
    assert wait_until(lambda: first.alive() and len(received()) >= 80, WAIT), first.output()
    app_pid = int(pid_file.read_text())
    if killed == "app":
        os.kill(app_pid, signal.SIGKILL)
        assert first.process.wait(timeout=30) == 128 + signal.SIGKILL, "the app's exit code"
    else:
        first.process.kill()
        first.process.wait(timeout=30)
        assert wait_until(lambda: gone(app_pid), WAIT), "the app dies with lakeport"
    before = received()
    assert len(before) < count, "killed mid-stream"

    second = lakeport.start_app(folder, *options, **env)
    try:
        assert wait_until(lambda: second.alive()
                          and {r["value"] for r in received()} == set(range(count)), WAIT), \
            f"every reading at least once; log:\n{second.output()}"
    finally:
        second.stop()
    ids = [r["id"] for r in received()]
    again = len(ids) - len(set(ids))
    assert 0 < again <= in_flight, f"{again} readings received twice"
    by_id = {}
    for record in received():
        assert by_id.setdefault(record["id"], record["value"]) == record["value"], \
            "a reading delivered again has the same id"


@pytest.mark.slow
async def test_unmappable_messages_go_to_the_dead_letter_topic(tmp_path: Path) -> None:
    """What the app writes and lakeport has no topic for is dead-lettered with the reason;
    the stream goes on."""
    from lakeport.apps.kelvin import KelvinBridge

    url = (tmp_path / "streams").as_uri()
    folder = copy_app("temperature-converter", tmp_path)
    runtime = RuntimeManifest.build(load_manifest(folder), {"threshold": 0},
                                    asset_names=["pump-1"])
    bridge = KelvinBridge(runtime, url=url)
    host, port = await bridge.start()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        manifest = json.loads(await reader.readline())
        assert manifest["type"] == "runtime_manifest"
        assert manifest["payload"]["configuration"] == {"threshold": 0}
        assert [r["resource"] for r in manifest["payload"]["resources"]] == ["krn:asset:pump-1"]
        writer.write(b'not json\n{"type": "control-status", "payload": {"state": "sent"}}\n'
                     b'{"type": "data;pt=number", "resource": "krn:ad:pump-1/temperature_f", '
                     b'"payload": "hot"}\n{"type": "data;pt=number", '
                     b'"resource": "krn:ad:pump-1/temperature_f", "payload": 99.5}\n')
        await writer.drain()

        async def landed() -> bool:
            async with open_engine(url) as engine:
                info = await engine.topic_info("asset-data")
            return info.last_seqno >= 1

        assert await eventually(landed, WAIT), "the valid reading landed"
        writer.close()
    finally:
        await bridge.stop()
    letters = await asyncio.to_thread(payloads, url, "dead-letter.temperature-converter")
    errors = [letter["error"] for letter in letters]
    assert len(errors) == 3
    assert errors[0].startswith("not JSON")
    assert "'control-status' has no lakeport topic" in errors[1]
    assert "payload 'hot' is not a number" in errors[2]
    data = await asyncio.to_thread(readings, url, "temperature_f")
    assert [(d["asset"], d["value"], d["unit"]) for d in data] == [("pump-1", 99.5, "°F")]


VENDOR_CHECK = r'''
import json, sys
from kelvin.message import Message
from kelvin.application import filters
for line in sys.stdin:
    m = Message.model_validate_json(line)
    print(json.dumps([type(m).__name__, str(m.type), str(m.resource),
                      filters.is_asset_data_message(m), json.loads(m.encode())["payload"]]))
'''

VENDOR_WRITE = r'''
from datetime import datetime, timedelta, timezone
from uuid import uuid4
from kelvin.krn import KRNAsset, KRNAssetDataStream, KRNDatastream
from kelvin.message import (Boolean, ControlChange, CustomAction, CustomActionResult, Insight,
                            Message, Number, Recommendation, String)
from kelvin.message.msg_type import KMessageTypeData
r = KRNAssetDataStream("pump-1", "speed")
now = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)
cc = ControlChange(resource=r, payload=3.5, expiration_date=timedelta(minutes=5), retries=2)
for m in [Number(resource=r, payload=1.5, timestamp=now), String(resource=r, payload="x"),
          Boolean(resource=r, payload=True),
          Message(type=KMessageTypeData("object", "my.icd"), resource=r, payload={"a": 1}),
          cc,
          Recommendation(resource=KRNAsset("pump-1"), type="slow_down", control_changes=[cc],
                         description="too fast"),
          Insight(start_date=now, end_date=now, tag_name="fault", resource=KRNAsset("pump-1"),
                  contexts=[KRNDatastream("speed")]),
          CustomAction(resource=KRNAsset("pump-1"), type="flush", title="Flush",
                       expiration_date=timedelta(hours=1), payload={"litres": 3}),
          CustomActionResult(action_id=uuid4(), resource=KRNAsset("pump-1"), success=False,
                             message="busy")]:
    m = m.to_message() if hasattr(m, "to_message") else m
    print(m.encode().decode())
'''


@pytest.mark.slow
def test_every_message_type_converts_both_ways_with_the_vendor_sdk(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    python: Path = request.getfixturevalue("vendor_python")
    folder = copy_app("temperature-converter", tmp_path)
    runtime = RuntimeManifest.build(load_manifest(folder), {"threshold": 1})
    lines = [json.dumps(runtime.message())]
    ours = [Number(asset="a-1", datastream="temperature", value=20.5),
            String(asset="a-1", datastream="state", value="on"),
            ControlChange(asset="a-1", datastream="valve", value=True),
            Recommendation(asset="a-1", kind="open_valve",
                           control_changes=[ControlChange(asset="a-1", datastream="valve",
                                                          value=1.0)]),
            DataTag(asset="a-1", tag_name="fault", start=Number(asset="x", datastream="y",
                                                                value=0).time,
                    end=Number(asset="x", datastream="y", value=0).time,
                    datastreams=["temperature"])]
    lines += [json.dumps(to_vendor(m, f"00000000-0000-0000-0000-00000000000{i}"))
              for i, m in enumerate(ours)]
    lines.append(json.dumps(ActionRequest(id="00000000-0000-0000-0000-00000000000a",
                                          type="flush", resource="krn:asset:a-1",
                                          payload={"litres": 2}).to_vendor()))
    checked = subprocess.run([str(python), "-c", VENDOR_CHECK], input="\n".join(lines),
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    seen = [json.loads(line) for line in checked.stdout.splitlines()]
    assert [s[0] for s in seen] == ["RuntimeManifest", "Number", "String", "ControlChangeMsg",
                                    "RecommendationMsg", "DataTagMsg", "CustomActionMsg"]
    assert seen[1][1:] == ["data;pt=number", "krn:ad:a-1/temperature", True, 20.5]
    assert seen[2][1:4] == ["data;pt=string", "krn:ad:a-1/state", True]
    assert seen[3][4]["payload"] is True

    written = subprocess.run([str(python), "-c", VENDOR_WRITE], capture_output=True,
                             text=True, timeout=60)
    assert written.returncode == 0, written.stderr
    converted = [from_vendor(json.loads(line), units={"speed": "rpm"})
                 for line in written.stdout.splitlines()]
    number, string, boolean, obj, change, recommendation, tag, action, result = converted
    assert (number.asset, number.datastream, number.value, number.unit) == \
        ("pump-1", "speed", 1.5, "rpm")
    assert number.time.isoformat() == "2026-01-02T03:04:05.600000+00:00"
    assert (string.value, boolean.value, obj.value) == ("x", True, {"a": 1})
    assert isinstance(change, ControlChange)
    assert (change.value, change.retries) == (3.5, 2)
    assert isinstance(recommendation, Recommendation)
    assert recommendation.kind == "slow_down"
    assert recommendation.control_changes[0].value == 3.5
    assert isinstance(tag, DataTag)
    assert (tag.tag_name, tag.datastreams) == ("fault", ["speed"])
    assert isinstance(action, ActionRequest)
    assert (action.type, action.payload) == ("flush", {"litres": 3})
    assert isinstance(result, ActionResult)
    assert (result.success, result.message) == (False, "busy")


def test_deployment_file_gives_assets_their_parameters_and_datastreams(tmp_path: Path) -> None:
    from lakeport.apps.kelvin.launch import prepare

    manifest = load_manifest(copy_app("temperature-converter", tmp_path))
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text("assets:\n"
                          "  - name: pump-1\n"
                          "    parameters: {offset: 2}\n"
                          "    properties: {area: 3.5}\n"
                          "    datastreams: [temperature]\n"
                          "  - name: pump-2\n")
    runtime, delivery = prepare(manifest, {"threshold": 5}, assets=[], deployment=deployment,
                                ack_after=None)
    assert delivery.ack_after == 0, "an app's message is acked once written to it"
    payload = runtime.message()["payload"]
    one, two = payload["resources"]
    assert (one["resource"], one["parameters"], one["properties"]) == \
        ("krn:asset:pump-1", {"offset": 2.0}, {"area": 3.5})
    assert one["datastreams"] == {"temperature": {"map_to": "temperature", "way": "input"}}
    assert two["parameters"] == {"offset": 0.0}, "the parameter's default"
    assert two["datastreams"]["temperature_f"]["way"] == "output"
    assert payload["configuration"] == {"threshold": 5}
    assert payload["custom_actions"] == [{"type": "report-threshold", "way": "input-ca"}]
    assert not runtime.open_assets and runtime.admit("pump-3") is False

    for text, problem in [
        ("assets:\n  - name: pump-1\n    parameters: {speed: 1}\n",
         "assets[0] (pump-1).parameters.speed: temperature-converter has no such parameter"),
        ("assets:\n  - name: pump-1\n    parameters: {offset: high}\n",
         "assets[0] (pump-1).parameters.offset: must be a number"),
        ("assets:\n  - name: pump-1\n    colour: red\n",
         f"--deployment {deployment}: assets.0.colour: Extra inputs are not permitted"),
        ("assets:\n  - name: pump-1\n    datastreams: [pressure]\n",
         "'pressure' is not a datastream of temperature-converter"),
    ]:
        deployment.write_text(text)
        with pytest.raises(Invalid) as caught:
            prepare(manifest, {}, assets=[], deployment=deployment, ack_after=None)
        assert problem in str(caught.value)


def test_without_assets_the_simulators_assets_are_used_and_new_ones_added(
        tmp_path: Path) -> None:
    from lakeport.apps.kelvin.launch import EXPORTER_ACK_AFTER, prepare

    runtime, _ = prepare(load_manifest(copy_app("temperature-converter", tmp_path)), {},
                         assets=[], deployment=None, ack_after=None)
    assert [a.name for a in runtime.assets] == [f"asset-{i:02d}" for i in range(1, 11)]
    assert runtime.admit("asset-03") is True
    assert runtime.admit("asset-11") is None, "added: the app gets a new runtime manifest"
    assert "krn:asset:asset-11" in [r["resource"]
                                    for r in runtime.message()["payload"]["resources"]]
    _, delivery = prepare(load_manifest(copy_app("reading-recorder", tmp_path)), {},
                          assets=["a"], deployment=None, ack_after=None)
    assert delivery.ack_after == EXPORTER_ACK_AFTER, "exporters wait before acking"
