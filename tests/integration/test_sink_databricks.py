"""The Databricks volume sink against a local server speaking the workspace REST API.

Request bodies are checked against ``databricks-sdk``'s own models; uploaded files are read back
with pyarrow.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _databricks_api import CLIENT_ID, CLIENT_SECRET, TOKEN, FakeWorkspace
from databricks.sdk.mixins.files import FilesExt
from databricks.sdk.service.jobs import JobSettings, Source

from conftest import require_service
from lakeport.errors import Invalid, NotFound, Terminal, Transient
from lakeport.export.sinks import Batch, open_sink
from lakeport.export.sinks.databricks import DatabricksVolumeSink
from lakeport.export.sinks.databricks_jobs import copy_into_sql, delta_table_ddl, job_name
from lakeport.readings import ROW_SCHEMA

pytestmark = pytest.mark.timeout(60)

VOLUME = "/Volumes/main/plant/landing"
URL = f"dbfs:{VOLUME}/sensors"


@pytest.fixture(autouse=True)
def no_databricks_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the options given by each test configure the sink."""
    for name in ("DATABRICKS_HOST", "DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_CLIENT_ID",
                 "DATABRICKS_CLIENT_SECRET", "DATABRICKS_TOKEN", "DATABRICKS_ACCESS_TOKEN",
                 "DATABRICKS_JOB_CLUSTER_ID", "DATABRICKS_JOB_WAREHOUSE_ID",
                 "DATABRICKS_DELTA_TABLE", "DATABRICKS_CONFIG_FILE", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def workspace() -> Iterator[FakeWorkspace]:
    try:
        server = FakeWorkspace()
    except OSError as exc:
        require_service("local Databricks API server", f"cannot listen on loopback: {exc}")
    with server:
        server.state.volumes.add(VOLUME)
        yield server


def token_options(ws: FakeWorkspace, **extra: object) -> dict[str, object]:
    return {"host": ws.host, "token": TOKEN, "retry_timeout_seconds": 5, **extra}


def m2m_options(ws: FakeWorkspace, **extra: object) -> dict[str, object]:
    return {"host": ws.host, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "retry_timeout_seconds": 5, **extra}


def make_batch(first: int = 10, days: int = 2, per_day: int = 3) -> Batch:
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    rows = [
        {"time": start + timedelta(days=d, seconds=i), "asset": f"pump-{i}", "datastream": "temp",
         "value_number": float(d * 10 + i), "unit": "C", "seqno": first + d * per_day + i,
         "producer": "sim"}
        for d in range(days) for i in range(per_day)
    ]
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    return Batch("sensors", first, first + len(rows) - 1, table)


def assert_sdk_shape(body: dict) -> JobSettings:
    """The body is exactly what databricks-sdk's JobSettings model serialises."""
    settings = JobSettings.from_dict(body)
    assert settings.as_dict() == body
    return settings


# -- files ---------------------------------------------------------------------------------
async def test_write_uploads_one_parquet_file_per_day_that_reads_back(
    workspace: FakeWorkspace,
) -> None:
    batch = make_batch()
    async with open_sink(URL, token_options(workspace)) as sink:
        await sink.healthcheck()
        written = await sink.write(batch)

    assert written == [
        f"dbfs:{VOLUME}/sensors/sensors/date=2026-03-01/sensors-10-15.parquet",
        f"dbfs:{VOLUME}/sensors/sensors/date=2026-03-02/sensors-10-15.parquet",
    ]
    read_back = []
    for location, (_, rows) in zip(written, batch.partitions(), strict=True):
        data = workspace.state.files[location.removeprefix("dbfs:")]
        table = pq.read_table(io.BytesIO(data))
        assert table.to_pylist() == rows.to_pylist()
        read_back.extend(table.to_pylist())
    assert sorted(r["seqno"] for r in read_back) == list(range(10, 16))
    puts = workspace.state.calls("PUT", "/api/2.0/fs/files/")
    assert all(p.query == {"overwrite": ["true"]} for p in puts)
    assert all(p.headers["Content-Type"] == "application/octet-stream" for p in puts)


async def test_rewriting_a_batch_overwrites_the_same_files(workspace: FakeWorkspace) -> None:
    batch = make_batch()
    async with open_sink(URL, token_options(workspace)) as sink:
        first = await sink.write(batch)
    async with open_sink(URL, token_options(workspace)) as sink:  # a retry after a crash
        second = await sink.write(batch)

    assert first == second
    assert sorted(workspace.state.files) == sorted(p.removeprefix("dbfs:") for p in first)
    assert len(workspace.state.calls("PUT", "/api/2.0/fs/files/")) == 2 * len(first)


async def test_files_are_streamed_from_a_staged_file_that_is_then_removed(
    workspace: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[object] = []
    original = FilesExt.upload

    def spy(self: FilesExt, file_path: str, contents: object, **kwargs: object) -> object:
        sent.append(contents)
        return original(self, file_path, contents, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(FilesExt, "upload", spy)
    staging = tmp_path / "staging"
    staging.mkdir()
    async with open_sink(URL, token_options(workspace, tmp_dir=str(staging))) as sink:
        written = await sink.write(make_batch())

    assert len(sent) == len(written) == 2
    assert all(isinstance(c, io.BufferedReader) and c.closed for c in sent)
    assert list(staging.iterdir()) == []


async def test_json_lines_files_land_with_their_extension(workspace: FakeWorkspace) -> None:
    batch = make_batch(days=1)
    async with open_sink(URL, token_options(workspace)) as sink:
        (location,) = await sink.write(batch, "jsonl")

    assert location.endswith("/sensors/date=2026-03-01/sensors-10-12.jsonl")
    lines = workspace.state.files[location.removeprefix("dbfs:")].decode().splitlines()
    assert [json.loads(line)["seqno"] for line in lines] == [10, 11, 12]


async def test_oauth_m2m_signs_in_with_client_credentials(workspace: FakeWorkspace) -> None:
    async with open_sink(URL, m2m_options(workspace)) as sink:
        await sink.healthcheck()
        await sink.write(make_batch(days=1))

    assert workspace.state.calls("POST", "/oidc/v1/token")
    api_calls = [r for r in workspace.state.requests if r.path.startswith("/api/")]
    assert api_calls
    assert all(r.headers["Authorization"].startswith("Bearer oauth-") for r in api_calls)


async def test_environment_variables_configure_the_sink(
    workspace: FakeWorkspace, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABRICKS_SERVER_HOSTNAME", workspace.host)
    monkeypatch.setenv("DATABRICKS_ACCESS_TOKEN", TOKEN)
    async with open_sink(URL, {"retry_timeout_seconds": 5}) as sink:
        await sink.healthcheck()
        assert await sink.write(make_batch(days=1))


# -- ingestion jobs ------------------------------------------------------------------------
async def test_autoloader_job_is_created_once_and_reset_on_the_next_start(
    workspace: FakeWorkspace,
) -> None:
    options = token_options(workspace, job_cluster_id="0301-cluster",
                            delta_table="main.plant.readings")
    async with open_sink(URL, options) as sink:
        await sink.write(make_batch(first=1))
        await sink.write(make_batch(first=7))
        first_job = sink.job_id

    creates = workspace.state.calls("POST", "/api/2.2/jobs/create")
    assert len(creates) == 1
    settings = assert_sdk_shape(creates[0].json())
    name = settings.name
    assert name is not None and name.startswith("lakeport-ingest-main.plant.readings-")
    assert settings.trigger is not None and settings.trigger.file_arrival is not None
    assert settings.trigger.file_arrival.url == f"{VOLUME}/sensors/"
    assert settings.tasks is not None and len(settings.tasks) == 1
    task = settings.tasks[0]
    assert task.existing_cluster_id == "0301-cluster"
    assert task.spark_python_task is not None
    script_path = task.spark_python_task.python_file
    assert script_path.startswith(f"{VOLUME}/_lakeport/")
    script = workspace.state.files[script_path].decode()
    compile(script, script_path, "exec")
    assert '"cloudFiles"' in script and f'.load("{VOLUME}/sensors")' in script
    assert ".trigger(availableNow=True)" in script and '.toTable("main.plant.readings")' in script
    assert f'"checkpointLocation", "{VOLUME}/_lakeport/' in script
    assert all(f'StructField("{column}"' in script for column in ROW_SCHEMA.names)
    assert '_metadata.file_path' in script and '.alias("date")' in script

    async with open_sink(URL, options) as sink:
        await sink.write(make_batch(first=13))
        assert sink.job_id == first_job

    assert len(workspace.state.calls("POST", "/api/2.2/jobs/create")) == 1
    resets = workspace.state.calls("POST", "/api/2.2/jobs/reset")
    assert len(resets) == 1
    reset = resets[0].json()
    assert reset["job_id"] == first_job
    assert assert_sdk_shape(reset["new_settings"]) == settings
    assert list(workspace.state.jobs) == [first_job]


async def test_copy_into_job_runs_a_workspace_sql_file_on_the_warehouse(
    workspace: FakeWorkspace,
) -> None:
    options = m2m_options(workspace, job_warehouse_id="wh-42", delta_table="main.plant.readings")
    async with open_sink(URL, options) as sink:
        await sink.write(make_batch())

    (create,) = workspace.state.calls("POST", "/api/2.2/jobs/create")
    settings = assert_sdk_shape(create.json())
    assert settings.tasks is not None
    sql_task = settings.tasks[0].sql_task
    assert sql_task is not None and sql_task.warehouse_id == "wh-42"
    assert sql_task.file is not None and sql_task.file.source == Source.WORKSPACE
    assert sql_task.file.path.startswith("/Shared/lakeport/lakeport-ingest-main.plant.readings-")
    sql = workspace.state.workspace_files[sql_task.file.path].decode()
    assert sql.startswith("COPY INTO main.plant.readings\nFROM (\n    SELECT time, asset,")
    assert f"    FROM '{VOLUME}/sensors'\n)\n" in sql and "AS DATE) AS date\n" in sql
    assert "FILEFORMAT = PARQUET" in sql
    assert settings.trigger is not None and settings.trigger.file_arrival is not None
    assert settings.trigger.file_arrival.url == f"{VOLUME}/sensors/"
    assert "/Shared/lakeport" in workspace.state.workspace_dirs


def test_job_names_are_unique_per_landing_folder_and_workspace() -> None:
    table = "main.plant.readings"
    names = {
        job_name(table, f"{VOLUME}/a", "https://one.cloud.databricks.com"),
        job_name(table, f"{VOLUME}/b", "https://one.cloud.databricks.com"),
        job_name(table, f"{VOLUME}/a", "https://two.cloud.databricks.com"),
    }
    assert len(names) == 3
    assert job_name(table, f"{VOLUME}/a", "h") == job_name(table, f"{VOLUME}/a/", "h/")


def test_documented_table_and_copy_into_are_what_the_job_uses() -> None:
    ddl = delta_table_ddl("main.plant.readings")
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS main.plant.readings (")
    for column in ROW_SCHEMA.names:
        assert f"\n    {column} " in ddl
    assert "time TIMESTAMP NOT NULL" in ddl and "value_number DOUBLE," in ddl
    assert ddl.endswith("    date DATE NOT NULL\n)\nUSING DELTA\nPARTITIONED BY (date);")
    docs = (Path(__file__).parents[2] / "docs" / "sinks" / "databricks.md").read_text()
    assert delta_table_ddl("<catalog>.<schema>.<table>") in docs
    assert copy_into_sql("/Volumes/<catalog>/<schema>/<volume>/<path>",
                         "<catalog>.<schema>.<table>") in docs


# -- errors --------------------------------------------------------------------------------
async def test_missing_volume_is_terminal_and_named(workspace: FakeWorkspace) -> None:
    url = "dbfs:/Volumes/main/plant/nosuch/sensors"
    async with open_sink(url, token_options(workspace)) as sink:
        with pytest.raises(NotFound) as info:
            await sink.healthcheck()
        assert str(info.value).startswith(
            "volume /Volumes/main/plant/nosuch does not exist or is not visible to this principal"
        )
        with pytest.raises(NotFound, match="volume /Volumes/main/plant/nosuch does not exist"):
            await sink.write(make_batch())
    assert not workspace.state.files


async def test_bad_token_is_terminal(workspace: FakeWorkspace) -> None:
    async with open_sink(URL, token_options(workspace, token="dapi-wrong")) as sink:
        with pytest.raises(Terminal, match="the credentials were rejected"):
            await sink.healthcheck()


async def test_bad_client_secret_is_terminal(workspace: FakeWorkspace) -> None:
    async with open_sink(URL, m2m_options(workspace, client_secret="wrong")) as sink:
        with pytest.raises(Terminal) as info:
            await sink.healthcheck()
    assert not isinstance(info.value, Transient)
    assert "the credentials were rejected" in str(info.value)
    assert workspace.host in str(info.value)


async def test_principal_without_grants_is_terminal(workspace: FakeWorkspace) -> None:
    workspace.state.forbidden = "/api/"
    async with open_sink(URL, token_options(workspace)) as sink:
        with pytest.raises(Terminal, match=r"permission denied .*grant the principal"):
            await sink.healthcheck()


async def test_principal_that_cannot_create_jobs_gets_a_terminal_error_before_any_file(
    workspace: FakeWorkspace,
) -> None:
    workspace.state.forbidden = "/api/2.2/jobs/"
    options = token_options(workspace, job_warehouse_id="wh-42", delta_table="main.plant.readings")
    async with open_sink(URL, options) as sink:
        await sink.healthcheck()
        with pytest.raises(Terminal, match="permission denied"):
            await sink.write(make_batch())
    assert not workspace.state.files


@pytest.mark.parametrize(
    "credentials",
    [{"token": TOKEN}, {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}],
    ids=["token", "oauth-m2m"],
)
async def test_unreachable_workspace_is_transient(credentials: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    options = {"host": f"http://127.0.0.1:{port}", "retry_timeout_seconds": 1, **credentials}
    async with open_sink(URL, options) as sink:
        with pytest.raises(Transient, match=f"cannot reach Databricks at http://127.0.0.1:{port}"):
            await sink.healthcheck()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("dbfs:/Volumes/main/plant", {}, "expected dbfs:/Volumes/<catalog>/<schema>/<volume>"),
        (URL, {"job_cluster_id": "c1"}, "needs DATABRICKS_DELTA_TABLE"),
        (URL, {"job_warehouse_id": "w1", "delta_table": "readings"}, "bad Delta table"),
        (f"dbfs:{VOLUME}", {"job_cluster_id": "c1", "delta_table": "a.b.c"},
         "needs a folder inside the volume"),
    ],
)
def test_bad_configuration_is_invalid(url: str, options: dict, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        DatabricksVolumeSink(url, {"host": "https://x.cloud.databricks.com", "token": "t",
                                   **options})


def test_missing_host_is_invalid() -> None:
    with pytest.raises(Invalid, match="set DATABRICKS_HOST"):
        open_sink(URL)
