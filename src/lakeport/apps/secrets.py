"""The local secret store behind ``<% secrets.NAME %>`` references in app manifests.

Secrets live in ``$LAKEPORT_HOME/secrets.json`` (a JSON object name → value) with file mode
0600, rewritten atomically (temporary file + ``os.replace``) under a lock so two commands
never lose each other's change. A value is never part of an error message or a ``repr``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

from lakeport.durable import fsync_path
from lakeport.errors import Conflict, Invalid, NotFound
from lakeport.home import lakeport_home

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SECRET_NAME_MAX = 253
SECRET_REF = re.compile(r"<%\s*secrets\.([^\s%]*)\s*%>")
MASK = "***"
FILE_MODE = 0o600
SECRET_NAME_RULE = "lowercase letters, digits and '-', starting and ending with a letter or digit"


def secret_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid secret name, or None when it is."""
    if not name:
        return "a secret name must not be empty"
    if len(name) > SECRET_NAME_MAX:
        return f"secret name '{name[:40]}...' is longer than {SECRET_NAME_MAX} characters"
    if not SECRET_NAME.match(name):
        return f"secret name '{name}' is not valid: use {SECRET_NAME_RULE}"
    return None


def validate_secret_name(name: str) -> str:
    """Return ``name``; Invalid (saying why) when it is not a valid secret name."""
    problem = secret_name_problem(name)
    if problem:
        raise Invalid(problem)
    return name


def missing_secret_message(name: str) -> str:
    return (f"secret '{name}' does not exist: create it with "
            f"lakeport secret create {name} --value ...")


class SecretStore:
    """Named secrets in ``<home>/secrets.json`` (``home`` defaults to the lakeport home)."""

    def __init__(self, home: Path | None = None) -> None:
        self._home = Path(home) if home is not None else None

    def __repr__(self) -> str:
        return f"SecretStore({str(self.path)!r})"

    @property
    def path(self) -> Path:
        """The store's file."""
        home = self._home if self._home is not None else lakeport_home()
        return home / "secrets.json"

    # -- reading --------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The names of every stored secret, sorted."""
        return sorted(self._read())

    def exists(self, name: str) -> bool:
        return name in self._read()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.exists(name)

    def get(self, name: str) -> str:
        """The value of secret ``name``; NotFound (naming the command that creates it)."""
        secrets = self._read()
        if name not in secrets:
            raise NotFound(missing_secret_message(name))
        return secrets[name]

    # -- changing -------------------------------------------------------------------------
    def create(self, name: str, value: str) -> None:
        """Store a new secret; Conflict if one of that name exists."""
        validate_secret_name(name)
        _check_value(value)
        with self._locked():
            secrets = self._read()
            if name in secrets:
                raise Conflict(f"secret '{name}' already exists: change it with "
                               f"lakeport secret update {name}")
            secrets[name] = value
            self._write(secrets)

    def update(self, name: str, value: str) -> None:
        """Replace the value of an existing secret; NotFound if there is none."""
        _check_value(value)
        with self._locked():
            secrets = self._read()
            if name not in secrets:
                raise NotFound(missing_secret_message(name))
            secrets[name] = value
            self._write(secrets)

    def delete(self, name: str) -> None:
        """Remove a secret; NotFound if there is none."""
        with self._locked():
            secrets = self._read()
            if name not in secrets:
                raise NotFound(f"secret '{name}' does not exist")
            del secrets[name]
            self._write(secrets)

    # -- the file -------------------------------------------------------------------------
    def _read(self) -> dict[str, str]:
        path = self.path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise Invalid(f"cannot read the secret store {path}: {exc.strerror}") from None
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise Invalid(f"the secret store {path} is not valid JSON (line {exc.lineno}, "
                          f"column {exc.colno}): fix or remove it") from None
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise Invalid(f"the secret store {path} must be a JSON object of names to "
                          "string values: fix or remove it")
        return data

    def _write(self, secrets: dict[str, str]) -> None:
        path = self.path
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                os.fchmod(file.fileno(), FILE_MODE)
                json.dump(secrets, file, indent=2, sort_keys=True)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        os.chmod(path, FILE_MODE)
        with contextlib.suppress(OSError):
            fsync_path(path.parent)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on ``secrets.json.lock`` while reading and rewriting."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - not POSIX
            yield
            return
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _check_value(value: str) -> None:
    if not isinstance(value, str):
        raise Invalid("a secret value must be text")
    if value == "":
        raise Invalid("a secret value must not be empty")


def secret_refs(text: str) -> list[str]:
    """The secret names referenced by ``<% secrets.NAME %>`` in ``text``, in order, once each."""
    return list(dict.fromkeys(SECRET_REF.findall(text)))


def resolve_secrets(text: str, store: SecretStore) -> str:
    """``text`` with every ``<% secrets.NAME %>`` replaced by the secret's value.

    Raises NotFound naming the first missing secret and the command that creates it.
    """
    if "<%" not in text:
        return text
    for name in secret_refs(text):
        validate_secret_name(name)
    return SECRET_REF.sub(lambda match: store.get(match.group(1)), text)


def mask_secrets(text: str) -> str:
    """``text`` with every ``<% secrets.NAME %>`` replaced by ``***``."""
    return SECRET_REF.sub(MASK, text)
