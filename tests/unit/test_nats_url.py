"""The ``nats://`` engine URL: servers of a cluster and the engine's settings."""

from __future__ import annotations

import asyncio

import pytest

from lakeport.errors import Invalid
from lakeport.streams import open_engine
from lakeport.streams.jetstream.url import display_url, parse_nats_url
from lakeport.streams.types import TopicOptions


def test_a_cluster_url_names_every_server_and_the_settings() -> None:
    settings = parse_nats_url("nats://a:4222,b:4222,nats://c:4222?replicas=3&failover_timeout=12.5")
    assert settings.servers == ("nats://a:4222", "nats://b:4222", "nats://c:4222")
    assert (settings.replicas, settings.failover_timeout) == (3, 12.5)


def test_defaults_are_one_copy_and_thirty_seconds() -> None:
    settings = parse_nats_url("nats://127.0.0.1:4222")
    assert (settings.servers, settings.replicas, settings.failover_timeout) == (
        ("nats://127.0.0.1:4222",), 1, 30.0)


@pytest.mark.parametrize(("url", "named"), [
    ("nats://a?replicas=0", "replicas='0'"),
    ("nats://a?replicas=6", "replicas='6'"),
    ("nats://a?replicas=two", "replicas='two'"),
    ("nats://a?failover_timeout=-1", "failover_timeout='-1'"),
    ("nats://a?failover_timeout=nan", "failover_timeout='nan'"),
    ("nats://a?replica=3", "unknown setting 'replica'"),
    (",?replicas=3", "no server"),
])
def test_a_bad_setting_is_refused_naming_it(url: str, named: str) -> None:
    with pytest.raises(Invalid, match=named.replace("(", r"\(")):
        parse_nats_url(url)


def test_passwords_are_hidden_in_messages() -> None:
    shown = display_url("nats://u:secret@a:4222,nats://u:secret@b:4222?replicas=3")
    assert "secret" not in shown and shown.count("u:***@") == 2


@pytest.mark.parametrize("url", ["memory://", "file"])
def test_engines_with_one_copy_refuse_replicas(url: str, tmp_path) -> None:
    if url == "file":
        url = f"file://{tmp_path}"

    async def create() -> None:
        async with open_engine(url) as engine:
            await engine.create_topic("t", TopicOptions(replicas=3))

    with pytest.raises(Invalid, match=r"replicas=3: the .* engine keeps one copy"):
        asyncio.run(create())


def test_replicas_above_five_are_refused_by_the_options() -> None:
    with pytest.raises(ValueError, match="replicas"):
        TopicOptions(replicas=6)
