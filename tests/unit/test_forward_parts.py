"""Forwarding's pure parts: msg_ids and site headers, the resume cut, the token bucket, and
one-line errors for bad options."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakeport.cli.main import main
from lakeport.errors import Invalid
from lakeport.forward import SITE_HEADER, ForwardConfig, Forwarder, TokenBucket
from lakeport.forward.forwarder import _first_after
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import Format, Message

header_maps = st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10),
                              max_size=4) | st.none()


def config(**options: object) -> ForwardConfig:
    return ForwardConfig(**{"from_topic": "raw", "to_url": "http://central:8400?api_key=k",
                            "site": "edge-1", **options})


@settings(max_examples=50, deadline=None)
@given(seqnos=st.lists(st.integers(1, 10**12), min_size=1, max_size=20, unique=True),
       headers=st.lists(header_maps, min_size=20, max_size=20))
def test_msg_ids_and_site_header(seqnos: list[int], headers: list) -> None:
    seqnos.sort()
    messages = [Message(s, 1, "p", b"{}", Format.JSON, h) for s, h in zip(seqnos, headers,
                                                                           strict=False)]
    forwarder = Forwarder(config(), engine_stub(), save_status=False)
    out, msg_ids = forwarder.outgoing(MessageBlock.from_messages(messages, Format.JSON))
    assert msg_ids.to_pylist() == [f"edge-1:raw:{s}" for s in seqnos]
    for original, sent in zip(messages, out.messages(), strict=True):
        assert sent.headers == {**(original.headers or {}), SITE_HEADER: "edge-1"}
        assert (sent.seqno, sent.timestamp_ns, sent.producer, sent.data) == \
            (original.seqno, original.timestamp_ns, original.producer, original.data)


@given(seqnos=st.lists(st.integers(1, 10**6), min_size=1, max_size=30, unique=True),
       resume=st.integers(0, 10**6 + 1))
def test_the_resume_cut_keeps_exactly_the_later_messages(seqnos: list[int],
                                                         resume: int) -> None:
    seqnos.sort()
    block = MessageBlock.from_messages([Message(s, 1, "p", b"1") for s in seqnos], Format.JSON)
    kept = block.slice(_first_after(block, resume))
    assert [m.seqno for m in kept.messages()] == [s for s in seqnos if s > resume]


def engine_stub() -> object:
    return object()  # outgoing() does not touch the engine


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_token_bucket_holds_the_average_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
    assert await bucket.take(1000) == 0  # one second's burst is free
    for _ in range(10):
        await bucket.take(500)
    assert clock.now == pytest.approx(5.0)  # 5000 bytes more at 1000 B/s
    clock.now += 10  # idle: only one second's burst is saved
    assert await bucket.take(1000) == 0
    assert await bucket.take(1000) == pytest.approx(1.0)


def test_the_token_bucket_needs_a_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)


def test_config_names() -> None:
    assert config().target == "raw"
    assert config(prefix="site1.").target == "site1.raw"
    assert config(to_topic="all", prefix="x.").target == "all"
    assert config().consumer_name == "forward:central:8400:raw"
    assert config().id_prefix == "edge-1:raw:"
    assert config().shown_url == "http://central:8400"
    assert config(max_rate="1MB/s").max_rate == 1 << 20
    spec = ForwardConfig.from_spec("raw=http://c:1?api_key=k", site="s")
    assert (spec.from_topic, spec.to_url, spec.site) == ("raw", "http://c:1?api_key=k", "s")


@pytest.mark.parametrize(("argv", "option"), [
    (["forward", "--to", "http://c:1"], "--from: required"),
    (["forward", "--from", "raw"], "--to: required"),
    (["forward", "--from", "r w", "--to", "http://c:1"], "--from: bad name"),
    (["forward", "--from", "raw", "--to", "central"], "--to: bad URL"),
    (["forward", "--from", "raw", "--to", "http://c:1", "--max-rate", "fast"],
     "--max-rate: bad size"),
    (["forward", "--from", "raw", "--to", "http://c:1", "--max-rate", "0"], "--max-rate:"),
    (["forward", "--from", "raw", "--to", "http://c:1", "--site", "a b"], "--site: bad site"),
    (["forward", "--from", "raw", "--to", "http://c:1", "--prefix", "a/"], "--prefix: bad name"),
    (["forward", "--from", "raw", "--to", "http://c:1", "--batch", "0"], "--batch:"),
    (["serve", "--forward", "raw"], "--forward: bad 'raw': use TOPIC=URL"),
])
def test_bad_options_are_one_line_errors(argv: list[str], option: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert err.startswith(f"error: {option}"), err
    assert err.count("\n") == 1, err


def test_a_bad_spec_never_shows_the_key() -> None:
    with pytest.raises(Invalid) as error:
        ForwardConfig.from_spec("http://c:1?api_key=secret")
    assert "secret" not in str(error.value)
