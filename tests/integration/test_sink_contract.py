"""One contract every lake sink keeps, run against each of them on a real or local target:
``file://`` (a folder), ``s3://`` (moto's S3 server), ``abfs://`` (Azurite), ``dbfs:/Volumes``
(a local server speaking the Databricks REST calls), ``delta+file://`` (a local table) and
``table://`` (a storage table in a local lake).

A sink lands a batch exactly once however often it is written, leaves no temporary behind
when a write fails half-way, refuses options it does not know, says whether a retry can help
(Terminal: bad credentials, a missing bucket/container/volume/folder; Transient: refused
connections, throttling, I/O errors) and has a health check that passes on a good target.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pytest
from _azurite import DEV_ACCOUNT, INSTALL_TIMEOUT_S
from _azurite import find_azurite_blob as _find_azurite
from _sink_targets import (  # noqa: F401 (moto, moto_checking_keys, azurite: fixtures)
    SINKS,
    TARGETS,
    VOLUME,
    Target,
    azurite,
    batch,
    moto,
    moto_checking_keys,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeport.errors import Invalid, Terminal, Transient
from lakeport.export.sinks import Batch, open_sink

pytestmark = pytest.mark.timeout(60 if _find_azurite() else 60 + INSTALL_TIMEOUT_S)


@pytest.fixture(params=SINKS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return TARGETS[request.param](request, tmp_path)


def same_rows(stored: pa.Table, written: Batch) -> bool:
    """``stored`` holds exactly the batch's rows, each once."""
    names = written.table.schema.names
    return (stored.select(names).sort_by("seqno").to_pylist()
            == written.table.sort_by("seqno").to_pylist())


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text, f"not one line: {text!r}"
    return text


# -- the contract --------------------------------------------------------------------------
async def test_the_health_check_passes_on_a_good_target_and_leaves_nothing(
        target: Target) -> None:
    async with open_sink(target.url, target.options) as sink:
        await sink.healthcheck()
    assert target.landed() == [] and target.leftovers() == []


async def test_a_batch_written_twice_lands_once_with_the_same_content(target: Target) -> None:
    async with open_sink(target.url, target.options) as sink:
        first = await sink.write(batch())
        stored = target.objects()
        again = await sink.write(batch())  # a retry before the ack
    async with open_sink(target.url, target.options) as sink:
        after_restart = await sink.write(batch())  # a restart after a crash before the ack
    assert first and sorted(first) == target.landed()
    assert set(again) <= set(first) and set(after_restart) <= set(first)
    assert target.objects() == stored, "writing the batch again changed what is stored"
    assert same_rows(target.rows(), batch())
    assert target.leftovers() == []


async def test_a_retry_after_a_failure_half_way_leaves_one_complete_copy(
        target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_sink(target.url, target.options) as sink:
        with monkeypatch.context() as failing:
            target.fault(failing)
            with pytest.raises(Transient) as failed:
                await sink.write(batch())
        one_line(failed.value)
        assert target.leftovers() == [], "a failed write left temporaries"
        retried = await sink.write(batch())
    assert sorted(retried) == target.landed()
    assert same_rows(target.rows(), batch())
    assert target.leftovers() == []


async def test_what_cannot_work_is_terminal_and_says_why(target: Target) -> None:
    for name, case in target.terminal.items():
        async with open_sink(case.url, case.options) as sink:
            with pytest.raises(Terminal) as checked:
                await sink.healthcheck()
            with pytest.raises(Terminal) as written:
                await sink.write(batch())
        for error in (checked.value, written.value):
            assert case.message in one_line(error), f"{name}: {error}"
            assert not isinstance(error, Transient)
    assert target.landed() == []


async def test_what_a_retry_can_mend_is_transient(target: Target,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name, case in target.transient.items():
        with monkeypatch.context() as failing:
            async with open_sink(case.url, case.options) as sink:
                if case.fault is None:
                    with pytest.raises(Transient) as checked:
                        await sink.healthcheck()
                    assert case.message in one_line(checked.value), f"{name}: {checked.value}"
                else:
                    case.fault(failing)
                with pytest.raises(Transient) as written:
                    await sink.write(batch())
        assert case.message in one_line(written.value), f"{name}: {written.value}"
    assert target.leftovers() == []


# -- options -------------------------------------------------------------------------------
SINK_URLS = {
    "file": ("file:///tmp/lake", {}),
    "s3": ("s3://lake/plant", {}),
    "abfs": (f"abfs://lake@{DEV_ACCOUNT}/plant", {}),
    "dbfs": (f"dbfs:{VOLUME}/sensors", {"host": "https://example.cloud.databricks.com"}),
    "delta": ("delta+file:///tmp/lake/readings", {}),
    "table": ("table://in.c-edge.readings", {}),
}


@pytest.mark.parametrize("sink", SINKS)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=1, max_size=30))
def test_an_unknown_option_is_refused_naming_it_and_the_sink(sink: str, name: str) -> None:
    url, options = SINK_URLS[sink]
    known = open_sink(url, options)
    if name in type(known.config).model_fields:
        return
    with pytest.raises(Invalid) as refused:
        open_sink(url, {**options, name: "x"})
    assert one_line(refused.value).startswith(
        f"unknown option {name!r} for {known.describe()}: use one of ")


@pytest.mark.parametrize("sink", SINKS)
def test_partition_by_asset_is_an_option_of_every_sink(sink: str) -> None:
    url, options = SINK_URLS[sink]
    assert open_sink(url, {**options, "partition_by_asset": True})
    with pytest.raises(Invalid, match=r"bad option 'partition_by_asset' for .*: "):
        open_sink(url, {**options, "partition_by_asset": "sometimes"})


@pytest.mark.parametrize(
    ("url", "package", "extra"),
    [("s3://lake/plant", "s3fs", "s3"), ("delta+s3://lake/readings", "s3fs", "delta,s3"),
     ("delta+file:///tmp/readings", "deltalake", "delta"),
     ("table://in.c-edge.readings", "deltalake", "delta"),
     (f"abfs://lake@{DEV_ACCOUNT}/plant", "azure.identity", "azure"),
     (f"dbfs:{VOLUME}/sensors", "databricks.sdk", "databricks")],
)
def test_a_missing_optional_package_names_the_extra_to_install(
        url: str, package: str, extra: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    with pytest.raises(Invalid) as refused:
        open_sink(url)
    assert one_line(refused.value).endswith(f"({package}): pip install 'lakeport[{extra}]'")
