"""The wire shared by the server, the client and the ``http(s)://`` engine: an error raised on
the server is the same class at the caller, any error answer is read without failing, and
topic payloads survive their JSON encoding."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lakeport.errors
from lakeport.errors import Invalid, LakeportError, Terminal, Transient, Unavailable
from lakeport.streams import Format
from lakeport.wire import (
    ERRORS,
    answer_for,
    code_for_status,
    data_from_text,
    data_to_text,
    error_class,
    json_value,
    payload_from_json,
    payload_to_json,
    read_error,
)

RAISED_ON_SERVER = [getattr(lakeport.errors, name) for name in lakeport.errors.__all__
                    if name not in ("LakeportError", "Terminal", "Transient")]


@pytest.mark.parametrize("kind", RAISED_ON_SERVER, ids=lambda kind: kind.__name__)
def test_an_error_raised_on_the_server_is_the_same_class_at_the_caller(
        kind: type[LakeportError]) -> None:
    row = answer_for(kind("boom"))
    body = orjson.dumps({"error": {"code": row.code, "message": "boom", "details": None}})
    answer = read_error(body, row.status)
    assert type(answer.error()) is kind and str(answer.error()) == "boom"
    assert read_error({"code": row.code, "message": "boom"}).kind is kind  # a WebSocket frame


def test_transient_and_other_errors_travel_as_what_a_caller_can_act_on() -> None:
    assert answer_for(Transient("busy"))[:2] == ("unavailable", 503)
    assert error_class("unavailable") is Unavailable
    assert answer_for(Terminal("odd"))[:2] == ("bad_request", 400)


def test_every_status_the_server_sends_has_one_code() -> None:
    for row in ERRORS:
        assert error_class(code_for_status(row.status)) is row.raised


@given(code=st.text(max_size=30), status=st.integers(100, 599))
def test_an_unknown_code_is_read_by_its_status(code: str, status: int) -> None:
    """A proxy's answer (or a newer server's code): 502 / 503 / 504 may pass with a retry,
    a status the server sends means what it means there, other 4xx are Invalid, else Terminal."""
    if code in {row.code for row in ERRORS}:
        return
    by_status = {row.status: row.raised for row in reversed(ERRORS)}
    expected = Unavailable if status in (502, 503, 504) else by_status.get(
        status, Invalid if 400 <= status < 500 else Terminal)
    assert error_class(code, status) is expected
    assert error_class(code) is Terminal


@given(body=st.binary(max_size=300), status=st.integers(400, 599))
def test_any_error_body_is_read(body: bytes, status: int) -> None:
    answer = read_error(body, status)
    assert isinstance(answer.error(), LakeportError)
    assert str(answer.error())


@given(data=st.binary(max_size=200))
def test_bytes_payloads_survive_the_wire(data: bytes) -> None:
    sent = orjson.loads(payload_to_json(data, Format.BYTES))
    assert payload_from_json(sent, Format.BYTES) == data
    assert payload_from_json(json_value(data), Format.BYTES) == data
    assert data_from_text(data_to_text(data)) == data


@given(text=st.text(max_size=200))
def test_string_payloads_survive_the_wire(text: str) -> None:
    sent = orjson.loads(payload_to_json(text.encode(), Format.STRING))
    assert payload_from_json(sent, Format.STRING) == text


def test_a_bad_bytes_payload_says_what_is_wrong() -> None:
    with pytest.raises(Invalid, match="'base64' is not valid base64"):
        payload_from_json({"base64": "not base64!"}, Format.BYTES)
    with pytest.raises(Invalid, match=r"a bytes topic takes a string payload or \{\"base64\""):
        payload_from_json(5, Format.BYTES)
