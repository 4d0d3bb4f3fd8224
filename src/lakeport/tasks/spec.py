"""What a task is: its settings as users write them (deploy, reschedule, copy).

One pydantic model with ``extra="forbid"``, shared by the server (which stores it), the
client and the CLI (which send it). Errors are one line naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lakeport.errors import Invalid
from lakeport.tasks.schedule import Now, Schedule

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Project and task names: 1-128 characters from A-Z a-z 0-9 _ . -, not starting with a
punctuation mark (they are folders of the lake: ``tasks/<project>/<task>/<run>/``)."""
RUN_STATES = ("queued", "running", "paused", "succeeded", "failed", "cancelled", "lost")
ENDED = frozenset({"succeeded", "failed", "cancelled", "lost"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def name_problem(value: str, what: str) -> str | None:
    """Why ``value`` is not a valid name of a ``what`` (project, task, node, ...); None when
    it is one."""
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        return None
    return (f"bad {what} name {value!r}: use 1-128 characters from A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit")


def check_name(value: str, what: str) -> str:
    """``value`` when it is a valid project or task name; Invalid naming ``what``."""
    problem = name_problem(value, what)
    if problem is not None:
        raise Invalid(problem)
    return value


def relative_path_problem(value: str) -> str | None:
    """Why ``value`` is not a relative path that stays inside its folder; None when it is."""
    if value.startswith("/") or ".." in value.split("/") or "\\" in value or not value.strip():
        return f"{value!r} must be a relative path inside its folder"
    return None


class Retries(BaseModel):
    """How often a failed or lost run is tried again, and how long it waits: ``backoff``
    seconds doubled per attempt up to ``max_backoff``, each wait spread by ``jitter``
    (0.2: up to 20% more or less)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(0, ge=0, le=100)
    backoff: float = Field(1.0, ge=0, le=86_400)
    max_backoff: float = Field(300.0, ge=0, le=86_400)
    jitter: float = Field(0.2, ge=0, le=1)


class TaskSpec(BaseModel):
    """A task's settings. ``entry`` defaults to the deployed executable's file name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: str = Field(description="py, js, java, c, cpp, sh, spark or component")
    entry: str | None = Field(None, max_length=1024)
    args: list[str] = Field(default_factory=list, max_length=1000)
    env: dict[str, str] = Field(default_factory=dict, description="values may be "
                                "<% secrets.NAME %> references, resolved when a run starts")
    settings: dict[str, str] = Field(default_factory=dict,
                                     description="runtime settings, e.g. master for spark")
    timeout: float | None = Field(None, gt=0, le=30 * 86_400, description="seconds")
    retries: Retries = Field(default_factory=Retries)
    memory_mb: int | None = Field(None, ge=16, le=1_048_576)
    cpu_seconds: int | None = Field(None, ge=1, le=30 * 86_400)
    schedule: Schedule = Field(default_factory=Now)

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str) -> str:
        from lakeport.tasks.runtimes import runtime_names

        if value not in runtime_names():
            raise ValueError(f"unknown runtime {value!r}: use {', '.join(runtime_names())}")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"bad environment variable name {name!r}")
        return value

    @field_validator("entry")
    @classmethod
    def _entry(cls, value: str | None) -> str | None:
        if value is not None and (problem := relative_path_problem(value)) is not None:
            raise ValueError(problem)
        return value


def one_line(exc: ValidationError, what: str) -> str:
    """A pydantic error as one line: ``bad <what>: <field>: <problem>; ...`` (a key that is
    not plain text is shown quoted, so a line stays one line)."""
    parts = []
    for error in exc.errors():
        where = ".".join(_shown(part) for part in error["loc"]) or what
        parts.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return f"bad {what}: " + "; ".join(parts)


def _shown(part: object) -> str:
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def parse_spec(data: Any) -> TaskSpec:
    """A :class:`TaskSpec` from a mapping; Invalid with one line naming the field."""
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise Invalid(one_line(exc, "task")) from None


__all__ = ["ENDED", "NAME_RE", "RUN_STATES", "Retries", "TaskSpec", "check_name", "name_problem",
           "one_line", "parse_spec", "relative_path_problem"]
