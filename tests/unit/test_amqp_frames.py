"""The publish frames lakeport packs itself are byte for byte what pamqp marshals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakeport.routing.amqp_frames import publish_frames, short_string

pamqp = pytest.importorskip("pamqp")


def pamqp_frames(channel: int, exchange: str, key: str, body: bytes, msg_id: str,
                 max_content: int) -> bytes:
    from pamqp import commands
    from pamqp.body import ContentBody
    from pamqp.frame import marshal
    from pamqp.header import ContentHeader

    parts = [marshal(commands.Basic.Publish(exchange=exchange, routing_key=key,
                                            mandatory=True), channel),
             marshal(ContentHeader(0, len(body), commands.Basic.Properties(
                 delivery_mode=2, message_id=msg_id)), channel)]
    parts += [marshal(ContentBody(body[i:i + max_content]), channel)
              for i in range(0, len(body), max_content)]
    return b"".join(parts)


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(channel=st.integers(1, 65535), key=names,
       exchange=st.from_regex(r"\A[-a-zA-Z0-9_.:]{0,60}\Z"), body=st.binary(max_size=3000),
       msg_id=names, max_content=st.integers(1, 1024))
def test_the_frames_are_pamqps(channel: int, exchange: str, key: str, body: bytes,
                               msg_id: str, max_content: int) -> None:
    assert publish_frames(channel, short_string(exchange), key, body, msg_id, max_content) == \
        pamqp_frames(channel, exchange, key, body, msg_id, max_content)


def test_a_name_over_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="over 255 bytes"):
        publish_frames(1, short_string("x"), "k" * 256, b"", "id", 100)
