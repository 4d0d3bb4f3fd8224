"""The optional Databricks ingestion job: volume files → a Delta table.

With a cluster id, an Auto Loader job (a small PySpark script kept in the volume, run as a
``spark_python_task`` on that cluster); with a SQL warehouse id, a ``COPY INTO`` job (a SQL file
in the workspace, run as a ``sql_task`` on that warehouse). Both are triggered on file arrival
in the landing folder, and named uniquely per deployment so that two exporters never share a job.
"""

from __future__ import annotations

import hashlib
import re
import textwrap

import pyarrow as pa
from databricks.sdk.service.jobs import (
    FileArrivalTriggerConfiguration,
    JobSettings,
    PauseStatus,
    QueueSettings,
    Source,
    SparkPythonTask,
    SqlTask,
    SqlTaskFile,
    Task,
    TriggerSettings,
)

from lakeport.errors import Invalid
from lakeport.readings import ROW_SCHEMA

DATE_FROM_PATH = "/date=([0-9]{4}-[0-9]{2}-[0-9]{2})/(asset=[^/]*/)?[^/]*$"
"""The day of a landed file's ``date=`` folder (group 1), below it an optional ``asset=``."""

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_`-]+\.[A-Za-z0-9_`-]+\.[A-Za-z0-9_`-]+$")

_SPARK_TYPES = {
    pa.timestamp("us", tz="UTC"): ("TIMESTAMP", "TimestampType"),
    pa.string(): ("STRING", "StringType"),
    pa.float64(): ("DOUBLE", "DoubleType"),
    pa.bool_(): ("BOOLEAN", "BooleanType"),
    pa.int64(): ("BIGINT", "LongType"),
}


def check_table_name(table: str) -> str:
    """``catalog.schema.table`` or :class:`Invalid` naming the setting."""
    if not _TABLE_NAME.match(table):
        raise Invalid(
            f"bad Delta table {table!r} (DATABRICKS_DELTA_TABLE): "
            "expected <catalog>.<schema>.<table>"
        )
    return table


def job_name(table: str, landing: str, host: str) -> str:
    """``lakeport-ingest-<table>-<hash>``: unique per table, landing folder and workspace."""
    digest = hashlib.sha256(f"{host.rstrip('/')}|{landing.rstrip('/')}".encode()).hexdigest()
    return f"lakeport-ingest-{table}-{digest[:10]}"


def delta_table_ddl(table: str) -> str:
    """The ``CREATE TABLE`` statement for the Delta table the job fills: the columns of
    ROW_SCHEMA plus ``date``, the partition column (the day of each file's ``date=`` folder)."""
    columns = ",\n".join(
        [f"    {f.name} {_SPARK_TYPES[f.type][0]}{'' if f.nullable else ' NOT NULL'}"
         for f in ROW_SCHEMA] + ["    date DATE NOT NULL"]
    )
    return (f"CREATE TABLE IF NOT EXISTS {table} (\n{columns}\n)\nUSING DELTA\n"
            "PARTITIONED BY (date);")


def autoloader_script(landing: str, checkpoint: str, table: str) -> str:
    """The PySpark script of the Auto Loader job: new Parquet files → ``table``, then stop."""
    fields = ",\n".join(
        f'    StructField("{f.name}", {_SPARK_TYPES[f.type][1]}(), {f.nullable})'
        for f in ROW_SCHEMA
    )
    imports = ", ".join(sorted({_SPARK_TYPES[f.type][1] for f in ROW_SCHEMA}))
    return f'''"""lakeport ingestion: Parquet files landed in {landing} -> {table}."""
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType, {imports}

spark = SparkSession.builder.getOrCreate()
schema = StructType([
{fields}
])
# the table's partition column: the day of the file's date= folder
day = F.to_date(F.regexp_extract("_metadata.file_path", r"{DATE_FROM_PATH}", 1))

(
    spark.readStream.format("cloudFiles")
    .option("cloudFiles.format", "parquet")
    .option("pathGlobFilter", "*.parquet")
    .schema(schema)
    .load("{landing}")
    .select(*schema.fieldNames(), day.alias("date"))  # never an asset= folder column
    .writeStream.option("checkpointLocation", "{checkpoint}")
    .trigger(availableNow=True)
    .toTable("{table}")
    .awaitTermination()
)
'''


def copy_into_sql(landing: str, table: str) -> str:
    """The SQL of the COPY INTO job: the row columns, and ``date`` from each file's ``date=``
    folder (files already loaded are skipped by COPY INTO itself)."""
    columns = "\n".join(textwrap.wrap(", ".join(ROW_SCHEMA.names) + ",", width=92,
                                      initial_indent="    SELECT ", subsequent_indent=" " * 8))
    return (
        f"COPY INTO {table}\n"
        "FROM (\n"
        f"{columns}\n"
        "        CAST(regexp_extract(_metadata.file_path,\n"
        f"            '{DATE_FROM_PATH}', 1) AS DATE) AS date\n"
        f"    FROM '{landing}'\n"
        ")\n"
        "FILEFORMAT = PARQUET\n"
        "PATTERN = '**/*.parquet'\n"
        "FORMAT_OPTIONS ('mergeSchema' = 'false')\n"
        "COPY_OPTIONS ('mergeSchema' = 'false');\n"
    )


def _trigger(landing: str) -> TriggerSettings:
    return TriggerSettings(
        file_arrival=FileArrivalTriggerConfiguration(url=landing.rstrip("/") + "/"),
        pause_status=PauseStatus.UNPAUSED,
    )


def autoloader_job(name: str, landing: str, script_path: str, cluster_id: str) -> JobSettings:
    """Settings of the Auto Loader job running ``script_path`` on an existing cluster."""
    return JobSettings(
        name=name,
        tasks=[
            Task(
                task_key="autoloader",
                existing_cluster_id=cluster_id,
                spark_python_task=SparkPythonTask(python_file=script_path),
            )
        ],
        trigger=_trigger(landing),
        max_concurrent_runs=1,
        queue=QueueSettings(enabled=True),
        tags={"lakeport": "ingest"},
    )


def copy_into_job(name: str, landing: str, sql_path: str, warehouse_id: str) -> JobSettings:
    """Settings of the COPY INTO job running the SQL file ``sql_path`` on a SQL warehouse."""
    return JobSettings(
        name=name,
        tasks=[
            Task(
                task_key="copy_into",
                sql_task=SqlTask(
                    warehouse_id=warehouse_id,
                    file=SqlTaskFile(path=sql_path, source=Source.WORKSPACE),
                ),
            )
        ],
        trigger=_trigger(landing),
        max_concurrent_runs=1,
        queue=QueueSettings(enabled=True),
        tags={"lakeport": "ingest"},
    )
