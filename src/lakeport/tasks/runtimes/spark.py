"""``spark``: ``spark-submit --master <master> entry args`` with the pyspark of lakeport.

pyspark comes with lakeport's ``spark`` extra (``pip install 'lakeport[spark]'``) and needs a
Java 17+ runtime. ``settings["master"]`` picks the master (``local[*]`` by default); other
settings whose name starts with ``spark.`` are passed as ``--conf name=value``;
``settings["class"]`` names the main class of a ``.jar`` entry. A Python entry's driver and
executors run with lakeport's interpreter (where pyspark is).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from lakeport.errors import Unavailable
from lakeport.tasks.runtimes.base import Job, Progress, entry_file, tool

INSTALL = "pip install 'lakeport[spark]'"
LOCAL_DEFAULTS = {"spark.ui.enabled": "false", "spark.driver.host": "127.0.0.1",
                  "spark.driver.bindAddress": "127.0.0.1"}


class SparkRuntime:
    name = "spark"

    def missing(self) -> str | None:
        if spark_submit() is None:
            return f"pyspark is not installed ({INSTALL}; spark also needs java 17+)"
        if tool("java") is None:
            return "java is not installed (spark needs a Java 17+ runtime)"
        return None

    def prepare(self, job: Job, on_progress: Progress) -> list[str]:
        entry = entry_file(job, ".py", ".jar")
        submit = spark_submit()
        if submit is None or tool("java") is None:
            raise Unavailable(self.missing() or "spark is not usable here")
        master = job.settings.get("master") or "local[*]"
        conf = dict(LOCAL_DEFAULTS) if master.startswith("local") else {}
        if entry.suffix.lower() == ".py":
            conf |= {"spark.pyspark.python": sys.executable,
                     "spark.pyspark.driver.python": sys.executable}
        conf |= {name: value for name, value in job.settings.items()
                 if name.startswith("spark.")}
        argv = [str(submit), "--master", master]
        for name, value in conf.items():
            argv += ["--conf", f"{name}={value}"]
        if job.settings.get("class"):
            argv += ["--class", job.settings["class"]]
        return [*argv, job.entry, *job.args]


def spark_submit() -> Path | None:
    """The ``spark-submit`` script of the installed pyspark (None: pyspark not installed)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    script = Path(next(iter(spec.submodule_search_locations))) / "bin" / "spark-submit"
    return script if script.is_file() else None
