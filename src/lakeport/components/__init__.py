"""Running data components written against the file contract (``config.json``, ``in/``,
``out/``, ``state.json``, ``usage.json``) on lakeport's own tables and files."""

from lakeport.components.config import ComponentConfig, load_config, parse_config
from lakeport.components.files import FileStore, StoredFile, parse_query
from lakeport.components.job import Job, JobStore, RunOptions, run_component
from lakeport.components.state import StateStore
from lakeport.components.usage import read_usage, sum_usage

__all__ = [
    "ComponentConfig",
    "FileStore",
    "Job",
    "JobStore",
    "RunOptions",
    "StateStore",
    "StoredFile",
    "load_config",
    "parse_config",
    "parse_query",
    "read_usage",
    "run_component",
    "sum_usage",
]
