"""The working folder an app's image runs in, read from its Dockerfile.

The Dockerfile is parsed by Docker's own parser (the ``dockerfile`` package: line
continuations, comments, the ``escape`` directive, instructions in any case, JSON and plain
forms, heredocs). The working folder is the last ``WORKDIR`` of the final build stage (a stage
``FROM`` an earlier stage starts with that stage's folder and variables); a relative ``WORKDIR``
is resolved against the one before it, and ``$NAME``, ``${NAME}``, ``${NAME:-word}`` and
``${NAME:+word}`` are replaced by the ``ENV`` and ``ARG`` values the Dockerfile sets, as Docker
does, with its quoting rules.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from lakeport.errors import Invalid

DOCKERFILE = "Dockerfile"
DEFAULT_WORKDIR = "/app"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIRECTIVE = re.compile(r"#\s*(?P<name>\w+)\s*=\s*(?P<value>\S+)\s*$")
_BRACED = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}")


@dataclass
class _Stage:
    workdir: str | None = None
    variables: dict[str, str | None] = field(default_factory=dict)
    from_env: set[str] = field(default_factory=set)


def image_workdir(app_folder: Path) -> tuple[str, str]:
    """The folder the app's image runs in, and where that comes from (for people to read):
    the last ``WORKDIR`` of ``<app_folder>/Dockerfile``, else ``/app``."""
    dockerfile = app_folder / DOCKERFILE
    workdir = dockerfile_workdir(dockerfile)
    if workdir is not None:
        return workdir, f"the last WORKDIR of {dockerfile}"
    if dockerfile.is_file():
        return DEFAULT_WORKDIR, f"the default: {dockerfile} sets no WORKDIR"
    return DEFAULT_WORKDIR, f"the default: there is no {dockerfile}"


def dockerfile_workdir(path: str | Path) -> str | None:
    """The working folder of the image built from the Dockerfile at ``path``.

    None when the file does not exist or its final stage sets no ``WORKDIR`` (the base
    image's folder then applies, which the Dockerfile does not say). Invalid, naming the file
    and line, when it cannot be parsed or a ``WORKDIR`` uses a variable without a value.
    """
    import dockerfile

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"{path}: cannot read it ({exc})") from None
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        if str(exc) == "file with no instructions":
            return None
        raise Invalid(f"{path}: not a valid Dockerfile ({exc})") from None
    escape = _escape_character(text)
    global_args: dict[str, str | None] = {}
    stages: dict[str, _Stage] = {}
    stage: _Stage | None = None
    for command in commands:
        instruction = command.cmd.upper()
        where = f"{path} line {command.start_line}"
        if instruction == "FROM":
            stage = _new_stage(command.value, stages)
        elif instruction == "ARG":
            _declare_args(command.value, stage, global_args, where, escape)
        elif stage is None:
            continue  # only ARG may come before the first FROM
        elif instruction == "ENV":
            pairs = zip(command.value[::2], command.value[1::2], strict=True)
            values = {name: expand(value, stage.variables, where, escape)
                      for name, value in pairs}
            stage.variables.update(values)
            stage.from_env.update(values)
        elif instruction == "WORKDIR":
            if not command.value:
                raise Invalid(f"{where}: WORKDIR needs a path")
            folder = expand(command.value[0], stage.variables, where, escape)
            stage.workdir = posixpath.normpath(posixpath.join(stage.workdir or "/", folder))
    return stage.workdir if stage is not None else None


def _new_stage(words: tuple[str, ...], stages: dict[str, _Stage]) -> _Stage:
    """The stage a ``FROM`` starts: an earlier stage's copy when it names one."""
    base = words[0].lower() if words else ""
    parent = stages.get(base)
    stage = (_Stage(parent.workdir, dict(parent.variables), set(parent.from_env))
             if parent is not None else _Stage())
    if len(words) == 3 and words[1].lower() == "as":
        stages[words[2].lower()] = stage
    return stage


def _escape_character(text: str) -> str:
    """The escape character set by an ``# escape=`` parser directive (default ``\\``)."""
    for line in text.splitlines():
        directive = _DIRECTIVE.match(line.strip())
        if directive is None:
            break
        if directive["name"].lower() == "escape":
            return directive["value"]
    return "\\"


def _declare_args(words: tuple[str, ...], stage: _Stage | None,
                  global_args: dict[str, str | None], where: str, escape: str) -> None:
    for word in words:
        name, equals, default = word.partition("=")
        if stage is None:
            global_args[name] = expand(default, global_args, where, escape) if equals else None
        elif name in stage.from_env:
            continue  # an ENV of the same name wins over an ARG
        elif equals:
            stage.variables[name] = expand(default, stage.variables, where, escape)
        else:  # ``ARG NAME`` in a stage takes the global default, if there is one
            stage.variables[name] = global_args.get(name)


def expand(word: str, variables: dict[str, str | None], where: str = "Dockerfile",
           escape: str = "\\") -> str:
    """``word`` as Docker reads it: quotes removed, escapes applied, variables replaced.

    Invalid when it uses a variable without a value (an ``ARG`` without a default, or one the
    Dockerfile does not set): its value is only known when the image is built.
    """
    out: list[str] = []
    index, quote = 0, ""
    while index < len(word):
        char = word[index]
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                out.append(char)
            index += 1
        elif char == escape and index + 1 < len(word):
            following = word[index + 1]
            if quote == '"' and following not in f'"${escape}':
                out.append(char)
            out.append(following)
            index += 2
        elif char in "'\"" and quote in ("", char):
            quote = "" if quote else char
            index += 1
        elif char == "$":
            text, index = _variable(word, index + 1, variables, where, escape)
            out.append(text)
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _variable(word: str, start: int, variables: dict[str, str | None], where: str,
              escape: str) -> tuple[str, int]:
    """The value of the variable whose reference starts at ``start`` (after ``$``), and
    where the text after it starts."""
    braced = _BRACED.match(word, start)
    plain = _NAME.match(word, start)
    if braced is not None:
        name, op, alternative, end = (braced["name"], braced["op"], braced["word"] or "",
                                      braced.end())
    elif plain is not None:
        name, op, alternative, end = plain.group(), None, "", plain.end()
    elif word.startswith("{", start):
        raise Invalid(f"{where}: ${word[start:]} is a substitution lakeport does not read: "
                      "give the working folder with --workdir")
    else:
        return "$", start
    value = variables.get(name)
    if op == ":-":
        return (value if value else expand(alternative, variables, where, escape)), end
    if op == ":+":
        return (expand(alternative, variables, where, escape) if value else ""), end
    if value is None:
        raise Invalid(f"{where}: ${name} has no value in the Dockerfile (a build argument or "
                      "the base image sets it): give the working folder with --workdir")
    return value, end
