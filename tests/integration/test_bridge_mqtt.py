"""MQTT bridges against real Mosquitto brokers: the machine's (127.0.0.1:1883) and ones started
here on free ports with TLS or a password file.

Ingest: ``mosquitto_pub`` readings land in a topic with the topic levels as fields; JSON,
numbers, text and SOS JSON payloads; a redelivered QoS 1 message is stored once; a bridge
killed with SIGKILL while QoS 1 messages are published loses none and stores none twice.
Egress: a topic published at QoS 1 and acked after the broker's PUBACKs. Bad input: an
unreachable broker (retries, says so), a certificate that does not verify, a wrong password.

``LAKEPORT_BRIDGE_KILL_MESSAGES=100000`` runs the kill test at the issue's size (default
20,000 to keep it under a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import getpass
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import require_service
from lakeport.errors import Unauthorized
from lakeport.routing import Bridge, open_bridge
from lakeport.streams import Engine, open_engine
from servers import free_port, port_open, running
from waiting import eventually, wait_until

paho = pytest.importorskip("paho.mqtt.client")

pytestmark = pytest.mark.timeout(120)

LAKEPORT = [sys.executable, "-m", "lakeport.cli"]
KILL_MESSAGES = int(os.environ.get("LAKEPORT_BRIDGE_KILL_MESSAGES", "20000"))


# -- brokers ----------------------------------------------------------------------------------
def _tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None)
    if found is None:
        require_service("Mosquitto", f"no {name} on this machine (apt-get install mosquitto "
                        "mosquitto-clients)")
    return found


@pytest.fixture
def machine_broker() -> str:
    if not port_open(1883):
        require_service("Mosquitto", "no MQTT broker at 127.0.0.1:1883")
    return "mqtt://127.0.0.1:1883"


@contextlib.contextmanager
def mosquitto(folder: Path, *lines: str, port: int | None = None) -> Iterator[int]:
    """A Mosquitto of our own on ``port`` (a free one by default), with config ``lines``."""
    binary = _tool("mosquitto")
    port = port or free_port()
    conf = folder / f"mosquitto-{port}.conf"
    # 'user' as ourselves: Mosquitto started by root would drop to 'mosquitto' otherwise and
    # could not read the test's files
    conf.write_text("\n".join([f"listener {port} 127.0.0.1", f"user {getpass.getuser()}",
                               *lines]) + "\n")
    log = open(folder / f"mosquitto-{port}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        with running(process, port, "Mosquitto", binary, start_timeout=10):
            yield port
    finally:
        log.close()


def publish(port: int, topic: str, *messages: str, qos: int = 0, extra: tuple[str, ...] = ()
            ) -> None:
    """``mosquitto_pub``, as a person would; several messages as lines of one run."""
    command = [_tool("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "-t", topic,
               "-q", str(qos), *extra]
    if len(messages) == 1:
        done = subprocess.run([*command, "-m", messages[0]], capture_output=True, timeout=30)
    else:
        done = subprocess.run([*command, "-l"], input="\n".join(messages).encode(),
                              capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr


def forget_session(port: int, client_id: str) -> None:
    """Drop a persistent session a test left on a shared broker (a clean-session login)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=True)
    with contextlib.suppress(Exception):
        client.connect("127.0.0.1", port, 10)
        client.loop_start()
        wait_until(client.is_connected, 5)
        client.disconnect()
        client.loop_stop()


# -- certificates -----------------------------------------------------------------------------
def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and a
    second CA that signed none of them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    paths: dict[str, Path] = {}

    def write(name: str, key: Any, cert: Any) -> None:
        paths[f"{name}.key"] = folder / f"{name}.key"
        paths[f"{name}.pem"] = folder / f"{name}.pem"
        paths[f"{name}.key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()))
        paths[f"{name}.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def build(subject: str, issuer: tuple[Any, Any] | None, ca: bool, usage: Any = None
              ) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name)
                   .issuer_name(issuer[1].subject if issuer else name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
        return key, cert

    ca = build("lakeport test CA", None, True)
    write("ca", *ca)
    write("server", *build("127.0.0.1", ca, False, ExtendedKeyUsageOID.SERVER_AUTH))
    write("client", *build("edge-01", ca, False, ExtendedKeyUsageOID.CLIENT_AUTH))
    write("other-ca", *build("some other CA", None, True))
    return paths


# -- running bridges --------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def bridging(engine: Engine, **config: Any) -> AsyncIterator[Bridge]:
    """A bridge running in this process until the block ends (its errors are raised)."""
    bridge = open_bridge(config)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop, engine))
    try:
        assert await eventually(lambda: bridge.status.connected or task.done()), \
            f"the bridge did not connect: {bridge.status.line()}"
        if task.done():
            task.result()
        yield bridge
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def read_all(engine: Engine, topic: str) -> list[Any]:
    consumer = engine.consumer(f"reader-{uuid.uuid4().hex[:8]}", topic, position="beginning",
                               follow=False, ephemeral=True, on_no_exists="create")
    async with consumer:
        return [message.payload async for message in consumer]


async def count(engine: Engine, topic: str) -> int:
    with contextlib.suppress(Exception):
        return (await engine.topic_info(topic)).last_seqno
    return 0


class Lines:
    """A process's stderr lines, read as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process, self.lines = process, []
        assert process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def has(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in self.lines)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._thread.join(5)
        return code


def cli_bridge(*args: str, env: dict[str, str] | None = None) -> Lines:
    process = subprocess.Popen([*LAKEPORT, "bridge", "run", *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=env)
    return Lines(process)


def memory() -> str:
    """A memory engine of the test's own (memory:// URLs share topics within a process)."""
    return f"memory://{uuid.uuid4().hex}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- ingest -----------------------------------------------------------------------------------
def test_a_mosquitto_pub_reading_arrives_in_raw_sensor_data(machine_broker: str) -> None:
    """The issue's Done-when, as a person runs it: the CLI bridge and the machine's client."""
    name = unique("done-when")
    bridge = cli_bridge(machine_broker, "--subscribe", "plant/#", "--to", "raw-sensor-data",
                        "--fields", "plant/{site}/{asset}/{datastream}", "--name", name)
    try:
        assert wait_until(lambda: bridge.has("^connected: ")), bridge.text
        publish(1883, "plant/north/pump-01/temperature", "85.2")

        async def arrived() -> list[Any]:
            async with open_engine() as engine:
                return [p for p in await read_all(engine, "raw-sensor-data")
                        if p.get("topic") == "plant/north/pump-01/temperature"]

        assert wait_until(lambda: asyncio.run(arrived())), bridge.text
        assert asyncio.run(arrived()) == [{
            "topic": "plant/north/pump-01/temperature", "site": "north", "asset": "pump-01",
            "datastream": "temperature", "value": 85.2}]
        assert bridge.stop() == 0, bridge.text
        assert re.search(r"stopped: .*\[stopped\].* [1-9][\d,]* in", bridge.text), bridge.text
    finally:
        bridge.stop()
        forget_session(1883, f"lakeport-{name}")


async def test_payloads_json_numbers_text_and_sos(machine_broker: str) -> None:
    base = unique("lakeport-test")
    async with open_engine(memory()) as engine:
        async with bridging(engine, url=machine_broker, subscribe=[f"{base}/+/+/+"],
                            to_topic="readings", fields=f"{base}/{{site}}/{{asset}}/+",
                            qos=0) as bridge:
            publish(1883, f"{base}/north/pump-01/temperature", "85.2")
            publish(1883, f"{base}/north/pump-02/pressure",
                    '{"value": 3.5, "unit": "bar", "asset": "ignored", "meta": {"line": 2}}')
            publish(1883, f"{base}/south/valve-07/state", "open")
            publish(1883, f"{base}/south/valve-07/ok", "true")
            assert await eventually(lambda: bridge.status.messages_out == 4), \
                bridge.status.line()
        got = {p["topic"].rsplit("/", 1)[1]: p for p in await read_all(engine, "readings")}
        assert got["temperature"] == {"topic": f"{base}/north/pump-01/temperature",
                                      "site": "north", "asset": "pump-01", "value": 85.2}
        assert got["pressure"] == {"topic": f"{base}/north/pump-02/pressure", "site": "north",
                                   "asset": "pump-02", "value": 3.5, "unit": "bar",
                                   "meta": {"line": 2}}  # topic levels win over the payload
        assert got["state"]["value"] == "open"
        assert got["ok"]["value"] is True

        # SOS JSON: one reading per observation; a payload that is not one is a dead letter
        async with bridging(engine, url=machine_broker, subscribe=[f"{base}/sos"],
                            to_topic="sos-readings", payload="sos", topic_field=None, qos=0,
                            name=unique("sos")) as bridge:
            publish(1883, f"{base}/sos", orjson.dumps(
                {"sensor": "s1", "feature": "f1", "observations": {"obs1": 1, "obs2": "test_1"}}
            ).decode())
            publish(1883, f"{base}/sos", '{"value": 1}')
            assert await eventually(lambda: bridge.status.dead_letters == 1
                                    and bridge.status.messages_out == 2), bridge.status.line()
        assert await read_all(engine, "sos-readings") == [
            {"asset": "s1", "sensor": "s1", "feature": "f1", "datastream": "obs1", "value": 1},
            {"asset": "s1", "sensor": "s1", "feature": "f1", "datastream": "obs2",
             "value": "test_1"}]
        [letter] = await read_all(engine, f"dead-letter.bridge.{bridge.status.name}")
        assert letter == b'{"value": 1}'

        # payload=number: anything else is a dead letter with the reason
        async with bridging(engine, url=machine_broker, subscribe=[f"{base}/n/#"],
                            to_topic="numbers", payload="number", qos=0,
                            name=unique("numbers")) as bridge:
            publish(1883, f"{base}/n/a", "21")
            publish(1883, f"{base}/n/b", "warm")
            assert await eventually(lambda: bridge.status.dead_letters == 1
                                    and bridge.status.messages_out == 1), bridge.status.line()
        assert await read_all(engine, "numbers") == [{"topic": f"{base}/n/a", "value": 21}]
        consumer = engine.consumer("look", f"dead-letter.bridge.{bridge.status.name}",
                                   position="beginning", follow=False, ephemeral=True)
        async with consumer:
            [message] = [m async for m in consumer]
        assert message.data == b"warm"
        assert message.headers["dead-letter-reason"] == "payload is not a number"
        assert message.headers["mqtt-topic"] == f"{base}/n/b"


async def test_a_redelivered_qos1_message_is_stored_once(machine_broker: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops after the produce and before the PUBACKs: the broker delivers the
    batch again (DUP) and the msg_ids drop it."""
    from lakeport.routing.mqtt_session import MqttConnection

    original, dropped = MqttConnection.puback, []

    def die_before_the_first_acks(self: Any, mids: list[int]) -> None:
        if mids and not dropped:
            dropped.extend(mids)
            self.wire.fail("test: the bridge went away before its PUBACKs")
            return
        original(self, mids)

    monkeypatch.setattr(MqttConnection, "puback", die_before_the_first_acks)
    base, name = unique("lakeport-test"), unique("redelivery")
    try:
        async with open_engine(memory()) as engine:
            async with bridging(engine, url=machine_broker, subscribe=[f"{base}/#"],
                                to_topic="readings", name=name, retry_first=0.1) as bridge:
                publish(1883, f"{base}/pump", *(f'{{"id": {i}}}' for i in range(20)), qos=1)
                assert await eventually(lambda: bridge.status.messages_out == 20
                                        and bridge.status.duplicates == len(dropped)), \
                    bridge.status.line()
                assert bridge.status.connects >= 2
                ids = [p["id"] for p in await read_all(engine, "readings")]
        assert dropped, "no PUBACK was held back: the test did not exercise a redelivery"
        assert sorted(ids) == list(range(20)), ids
    finally:
        forget_session(1883, f"lakeport-{name}")


async def test_a_large_payload_arrives_whole(machine_broker: str, tmp_path: Path) -> None:
    """A 3 MB message spans many reads of the connection."""
    base = unique("lakeport-test")
    big = tmp_path / "big.json"
    big.write_bytes(orjson.dumps({"value": 1.5, "blob": "x" * 3_000_000}))
    async with open_engine(memory()) as engine:
        async with bridging(engine, url=machine_broker, subscribe=[f"{base}/#"],
                            to_topic="big", qos=0) as bridge:
            publish(1883, f"{base}/a", "1")
            _publish_file(1883, f"{base}/b", big)
            publish(1883, f"{base}/c", "3")
            assert await eventually(lambda: bridge.status.messages_out == 3), \
                bridge.status.line()
        got = await read_all(engine, "big")
    assert [(p["topic"][-1], p["value"], len(p.get("blob", ""))) for p in got] == [
        ("a", 1, 0), ("b", 1.5, 3_000_000), ("c", 3, 0)]


def _publish_file(port: int, topic: str, path: Path) -> None:
    done = subprocess.run([_tool("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "-t",
                           topic, "-f", str(path)], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr


async def test_mqtt5_user_property_msg_id(tmp_path: Path) -> None:
    """MQTT 5: a publisher's msg_id user property is the message's msg_id in lakeport."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    with mosquitto(tmp_path, "allow_anonymous true") as port:
        async with open_engine(memory()) as engine:
            async with bridging(engine, url=f"mqtt://127.0.0.1:{port}?protocol=5",
                                subscribe=["plant/#"], to_topic="readings") as bridge:
                client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
                client.connect("127.0.0.1", port)
                client.loop_start()
                for value in (1, 1, 2):
                    props = Properties(PacketTypes.PUBLISH)
                    props.UserProperty = ("msg_id", f"reading-{value}")
                    client.publish("plant/a", str(value), qos=1,
                                   properties=props).wait_for_publish(10)
                client.disconnect()
                client.loop_stop()
                assert await eventually(lambda: bridge.status.messages_out == 2
                                        and bridge.status.duplicates == 1), bridge.status.line()
            assert [p["value"] for p in await read_all(engine, "readings")] == [1, 2]


# -- egress -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("qos", "protocol"), [(1, "3.1.1"), (1, "5"), (0, "3.1.1")])
async def test_egress_publishes_and_acks_after_the_broker(machine_broker: str, qos: int,
                                                          protocol: str) -> None:
    """MQTT 5: the broker's Receive Maximum (Mosquitto: 20) bounds what is in flight."""
    base, name = unique("lakeport-test"), unique("egress")
    received: list[tuple[str, bytes]] = []
    subscriber = paho.Client(paho.CallbackAPIVersion.VERSION2)
    subscriber.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    subscribed = threading.Event()
    subscriber.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{base}/#", 1)
    subscriber.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
    subscriber.connect("127.0.0.1", 1883)
    subscriber.loop_start()
    try:
        assert wait_until(subscribed.is_set), "the subscriber got no SUBACK"
        async with open_engine(memory()) as engine:
            async with engine.producer("alarms", "alerts") as producer:
                await producer.produce_many([{"asset": f"pump-{i % 3}", "value": i}
                                             for i in range(300)] + [{"value": "no asset"}])
            async with bridging(engine, url=machine_broker, from_topic="alerts",
                                publish=f"{base}/{{asset}}/out", qos=qos, name=name,
                                batch_size=100, protocol=protocol) as bridge:
                assert await eventually(lambda: bridge.status.messages_out == 300
                                        and bridge.status.dead_letters == 1), \
                    bridge.status.line()

                async def all_acked() -> bool:
                    info = await engine.topic_info("alerts")
                    return next(c.acked for c in info.consumers if c.name == name) == 301

                assert await eventually(all_acked), "the bridge did not ack the topic"
                assert await eventually(lambda: len(received) == 300), len(received)
            [letter] = await read_all(engine, f"dead-letter.bridge.{name}")
            assert orjson.loads(letter) == {"value": "no asset"}
            # a restart sends nothing again: everything was acked (a message produced after
            # it is the only one it sends)
            async with bridging(engine, url=machine_broker, from_topic="alerts",
                                publish=f"{base}/{{asset}}/out", name=name) as bridge:
                async with engine.producer("alarms", "alerts") as producer:
                    await producer.produce({"asset": "pump-0", "value": 300})
                assert await eventually(lambda: len(received) == 301), len(received)
                assert bridge.status.messages_in == 1
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    by_topic = Counter(topic for topic, _ in received)
    assert by_topic == {f"{base}/pump-0/out": 101, f"{base}/pump-1/out": 100,
                        f"{base}/pump-2/out": 100}
    assert sorted(orjson.loads(p)["value"] for _, p in received) == list(range(301))


# -- connections: TLS, passwords, reconnects --------------------------------------------------
def test_tls_with_the_right_ca_a_client_certificate_and_the_wrong_ca(tmp_path: Path) -> None:
    certs = _certificates(tmp_path)
    client_port = free_port()
    tls = [f"cafile {certs['ca.pem']}", f"certfile {certs['server.pem']}",
           f"keyfile {certs['server.key']}"]
    with mosquitto(tmp_path, "allow_anonymous true", *tls,
                   f"listener {client_port} 127.0.0.1", *tls, "require_certificate true",
                   ) as port:
        assert wait_until(lambda: port_open(client_port))
        wrong = cli_bridge(f"mqtts://127.0.0.1:{port}", "--subscribe", "plant/#", "--to", "raw",
                           "--ca-file", str(certs["other-ca.pem"]))
        assert wrong.process.wait(30) == 1, wrong.text
        wrong.stop()
        [error] = [line for line in wrong.lines if line.startswith("error:")]
        assert re.fullmatch(rf"error: TLS: the certificate of the MQTT broker 127.0.0.1:{port} "
                            r"did not verify \((self-signed certificate in certificate chain|"
                            r"unable to get local issuer certificate)\): give the CA that "
                            "signed it with --ca-file", error), wrong.text

        for target, extra in ((port, []), (client_port, [
                "--cert-file", str(certs["client.pem"]), "--key-file", str(certs["client.key"])])):
            name = unique("tls")
            bridge = cli_bridge(f"mqtts://127.0.0.1:{target}", "--subscribe", "plant/#",
                                "--to", name, "--ca-file", str(certs["ca.pem"]), *extra)
            try:
                assert wait_until(lambda b=bridge: b.has("^connected: ")), bridge.text
                publish(target, "plant/north/pump-01/temperature", "85.2",
                        extra=("--cafile", str(certs["ca.pem"]), "--cert",
                               str(certs["client.pem"]), "--key", str(certs["client.key"])))

                async def values(topic: str = name) -> list[Any]:
                    async with open_engine() as engine:
                        return [p["value"] for p in await read_all(engine, topic)]

                assert wait_until(lambda v=values: asyncio.run(v()) == [85.2]), bridge.text
            finally:
                assert bridge.stop() == 0, bridge.text


def test_a_wrong_password_is_one_clear_error_and_a_secret_logs_in(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    done = subprocess.run([_tool("mosquitto_passwd"), "-b", "-c", str(passwords), "edge",
                           "s3cret-Pw"], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    with mosquitto(tmp_path, "allow_anonymous false", f"password_file {passwords}") as port:
        url = f"mqtt://127.0.0.1:{port}"
        wrong = cli_bridge(url, "--subscribe", "plant/#", "--to", "raw", "--username", "edge",
                           "--password", "guess")
        assert wrong.process.wait(30) == 1, wrong.text
        wrong.stop()
        assert [line for line in wrong.lines if line.startswith("error:")] == [
            f"error: the MQTT broker 127.0.0.1:{port} refused the login of user 'edge': "
            "not authorized"], wrong.text
        bridge = open_bridge(dict(url=url + "?protocol=5", subscribe=["plant/#"], to_topic="raw",
                                  username="edge", password="guess"))
        with pytest.raises(Unauthorized, match="refused the login of user 'edge': not "
                           "authorized"):
            asyncio.run(bridge.healthcheck())

        done = subprocess.run([*LAKEPORT, "secret", "create", "mqtt-password", "--value",
                               "s3cret-Pw"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        bridge = cli_bridge(url + "?protocol=5", "--subscribe", "plant/#", "--to", "raw",
                            "--username", "edge", "--password", "<% secrets.mqtt-password %>")
        try:
            assert wait_until(lambda: bridge.has("^connected: ")), bridge.text
        finally:
            assert bridge.stop() == 0, bridge.text
        assert "s3cret" not in bridge.text


async def test_an_unreachable_broker_is_retried_with_backoff_until_it_is_there(
        tmp_path: Path) -> None:
    port = free_port()
    async with open_engine(memory()) as engine:
        bridge = open_bridge(dict(url=f"mqtt://127.0.0.1:{port}", subscribe=["plant/#"],
                                  to_topic="raw", retry_first=0.2, retry_max=1.0))
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop, engine))
        try:
            assert await eventually(lambda: bridge.status.state == "retrying")
            status = bridge.status.to_dict()
            assert status["connected"] is False
            assert status["last_error"] == (f"cannot reach the MQTT broker 127.0.0.1:{port}: "
                                            "Connection refused")
            assert 0 < status["retry_in"] <= 1.1
            assert "retrying in" in bridge.status.line()
            with mosquitto(tmp_path, "allow_anonymous true", port=port):
                assert await eventually(lambda: bridge.status.connected), bridge.status.line()
                assert bridge.status.connects == 1
                publish(port, "plant/x", "1")
                assert await eventually(lambda: bridge.status.messages_out == 1)
            assert await eventually(lambda: bridge.status.state == "retrying"), \
                bridge.status.line()
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
    assert bridge.status.state == "stopped"

    cli = cli_bridge(f"mqtt://127.0.0.1:{port}", "--subscribe", "plant/#", "--to", "raw")
    assert wait_until(lambda: cli.has(f"^cannot reach the MQTT broker 127.0.0.1:{port}: "
                                      r"Connection refused: retrying in \d")), cli.text
    assert cli.stop() == 0, cli.text


def test_bad_options_are_one_line_errors() -> None:
    for args, message in (
        (["mqtt://127.0.0.1:1883", "--subscribe", "a/#", "--to", "t", "--from", "u"],
         "error: bad bridge: a bridge runs one way: give to_topic (ingest) or from_topic "
         "(egress)"),
        (["mqtt://127.0.0.1:1883", "--subscribe", "a/#/b", "--to", "t"],
         "error: bad topic filter 'a/#/b': + stands alone in a level, # alone in the last one"),
        (["mqtt://127.0.0.1:1883", "--from", "t", "--publish", "out/#"],
         "error: bad publish template 'out/#': a topic with {field} parts, no + or #"),
        (["kafka://127.0.0.1", "--subscribe", "a", "--to", "t"],
         "error: unknown bridge URL scheme 'kafka': use one of amqp://, amqps://, mqtt://, "
         "mqtts://"),
    ):
        done = subprocess.run([*LAKEPORT, "bridge", "run", *args], capture_output=True,
                              text=True, timeout=60)
        assert (done.returncode, done.stderr.strip()) == (1, message), done.stderr


# -- a bridge killed with SIGKILL while QoS 1 messages are published -------------------------
@pytest.mark.slow
@pytest.mark.crash
@pytest.mark.timeout(60 + KILL_MESSAGES // 1000)
def test_kill_9_while_qos1_messages_are_published_loses_none_and_stores_none_twice(
        tmp_path: Path) -> None:
    """Every message the broker acknowledged to the publisher is in the topic once (by the id in
    its payload), though the bridge was killed mid-stream and started again. The broker keeps
    the bridge's session (and its messages) meanwhile: no queue limit here, as a production
    broker for a persistent bridge needs (Mosquitto's default keeps 1,000)."""
    topic = "raw-sensor-data"
    with mosquitto(tmp_path, "allow_anonymous true", "max_queued_messages 0",
                   "max_inflight_messages 1000") as port:
        args = (f"mqtt://127.0.0.1:{port}", "--subscribe", "plant/#", "--to", topic,
                "--fields", "plant/{site}/{asset}/{datastream}", "--name", "killed")
        first = cli_bridge(*args)
        assert wait_until(lambda: first.has("^connected: ")), first.text

        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="publisher")
        publisher.max_inflight_messages_set(1000)
        acked = [0]
        publisher.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
        publisher.connect("127.0.0.1", port)
        publisher.loop_start()
        sent: list[tuple[int, Any]] = []

        def publish_all() -> None:
            for start in range(0, KILL_MESSAGES, 500):
                # at most 30,000 waiting for the broker's PUBACK: packet ids are 16 bits
                while len(sent) - acked[0] > 30_000:
                    time.sleep(0.01)
                for i in range(start, min(KILL_MESSAGES, start + 500)):
                    payload = orjson.dumps({"id": i, "value": i * 0.5, "unit": "C"})
                    sent.append((i, publisher.publish("plant/north/pump-01/temperature",
                                                      payload, qos=1)))
                time.sleep(0.03)

        thread = threading.Thread(target=publish_all)
        thread.start()
        try:
            stored = lambda: asyncio.run(_last(topic))  # noqa: E731
            assert wait_until(lambda: stored() >= KILL_MESSAGES // 5, 30), first.text
            first.process.kill()  # SIGKILL: no goodbye, no PUBACK after this point
            first.process.wait(10)
            at_kill, sent_at_kill = stored(), len(sent)
            # the broker keeps what comes while no bridge runs
            assert wait_until(lambda: len(sent) >= min(sent_at_kill + 2000, KILL_MESSAGES), 30)
            second = cli_bridge(*args)
            thread.join(60)
            assert wait_until(lambda: all(info.is_published() for _, info in sent), 30)
            assert at_kill < KILL_MESSAGES, "the kill came after the last message"
            assert wait_until(lambda: stored() >= KILL_MESSAGES, 40), second.text
            # redeliveries come before what is published after them: once a last message
            # is stored, no duplicate of an earlier one is still on its way
            publisher.publish("plant/north/pump-01/temperature",
                              orjson.dumps({"id": -1, "value": 0, "unit": "C"}), qos=1)
            assert wait_until(lambda: stored() > KILL_MESSAGES and any(
                p["id"] == -1 for p in asyncio.run(_all(topic))), 30), second.text
            assert second.stop() == 0, second.text
        finally:
            publisher.disconnect()
            publisher.loop_stop()
            first.stop()

    acked = {i for i, info in sent if info.is_published()}
    ids = Counter(p["id"] for p in asyncio.run(_all(topic)))
    twice = sorted(i for i, n in ids.items() if n > 1)
    assert not twice, f"{len(twice)} messages stored twice, e.g. {twice[:5]}"
    assert ids.pop(-1) == 1  # the last message, published after the others
    assert acked == set(range(KILL_MESSAGES)) and set(ids) == acked
    final = re.search(r"stopped: .*: ([\d,]+) in, ([\d,]+) out", second.text)
    assert final and int(final.group(1).replace(",", "")) > 0, second.text
    print(f"\nkilled at {at_kill:,} of {KILL_MESSAGES:,} stored; after the restart: {final[0]}")


async def _last(topic: str) -> int:
    async with open_engine() as engine:
        return await count(engine, topic)


async def _all(topic: str) -> list[Any]:
    async with open_engine() as engine:
        return await read_all(engine, topic)
