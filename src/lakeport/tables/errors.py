"""deltalake and object store errors as lakeport errors, one clear line each."""

from __future__ import annotations

import os

from deltalake.exceptions import CommitFailedError, SchemaMismatchError

from lakeport.errors import (
    Invalid,
    LakeportError,
    NotFound,
    Terminal,
    Transient,
    Unavailable,
)
from lakeport.export.sinks.delta import NETWORK_HINTS, OS_ERROR


def translate(exc: BaseException, action: str) -> LakeportError:
    """``exc`` raised while trying to ``action`` as Invalid, NotFound, Transient (another
    writer committed first: a retry may pass) or Terminal."""
    if isinstance(exc, LakeportError):
        return exc
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, CommitFailedError):
        return Transient(f"could not {action}: another writer committed first; retry "
                         f"({first})")
    if "NoSuchBucket" in text:
        return NotFound(f"could not {action}: the bucket does not exist ({first})")
    if isinstance(exc, SchemaMismatchError):
        return Invalid(f"could not {action}: the rows do not match the table ({first})")
    if any(hint in text.lower() for hint in NETWORK_HINTS):
        return Unavailable(f"could not {action}: storage unreachable ({first})")
    failed = OS_ERROR.search(text)
    if failed:
        code = int(failed.group(1) or failed.group(2))
        return Transient(f"could not {action}: {os.strerror(code)}")
    if isinstance(exc, OSError):
        return Transient(f"could not {action}: {first}")
    return Terminal(f"could not {action}: {first}")


__all__ = ["translate"]
