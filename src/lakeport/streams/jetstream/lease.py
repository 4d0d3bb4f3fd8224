"""Consumer modes across processes, implemented with leases in a JetStream KV bucket.

JetStream has no exclusive consumer. One KV entry per (topic, consumer name) in the bucket
``lakeport_leases`` records the mode and the members holding it, as
``{"mode": "exclusive", "members": {"<member id>": <expiry unix time>}}``. The bucket's TTL
(a few seconds) makes the entry of a member that died disappear; live members refresh it
about once a second with compare-and-set updates.

- exclusive: ``create`` the entry; if a live member holds it the consumer is refused with
  Conflict.
- standby: the same, but a member that cannot create it waits and retries; it becomes
  active when the active member closes (entry deleted) or dies (entry expires).
- shared: members add themselves to a shared entry; other modes are refused meanwhile.

A member restarted right after its predecessor was killed finds the predecessor's entry
still there. Before refusing, it watches the entry until it expires (at most
``LEASE_TTL``, logged): a live holder refreshes it within ``REFRESH_EVERY`` and the new
member is refused; a dead one does not and the new member takes the lease over. A refresh
that finds the entry gone (the bucket lost it, e.g. while its server restarted) creates it
again: the lease was not taken by anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

import nats.errors
import nats.js.errors
import orjson
from nats.js.kv import KeyValue

from lakeport.errors import Conflict, LakeportError
from lakeport.streams.jetstream.api import NO_ANSWER, resend, translate
from lakeport.streams.types import Mode

LEASE_TTL = 4.0
REFRESH_EVERY = 1.0
WATCH_EVERY = 0.25  # seconds between looks at a holder that may be dead
_CAS_TRIES = 20

log = logging.getLogger("lakeport.streams.jetstream")


_NO_ANSWER = (*NO_ANSWER, nats.js.errors.NoStreamResponseError)


class RetryingKV:
    """The lease bucket's operations, sent again while the bucket's servers elect a leader
    (no answer), for up to ``retry_for`` seconds. A ``create`` whose answer was lost may have
    happened: :class:`Lease` recognises its own entry."""

    def __init__(self, kv: KeyValue, retry_for: float) -> None:
        self.kv = kv
        self.retry_for = retry_for

    async def _call(self, op: Any, *args: Any, **kwargs: Any) -> Any:
        return await resend(lambda: op(*args, **kwargs), self.retry_for, _NO_ANSWER)

    async def get(self, key: str) -> Any:
        return await self._call(self.kv.get, key)

    async def create(self, key: str, value: bytes) -> int:
        """Create ``key``; KeyWrongLastSequenceError if an entry holds it.

        The client's create looks the entry up after a refusal; an entry that ages out
        between the two answers "key not found": nothing holds the key, create it again."""
        for _ in range(_CAS_TRIES):
            try:
                return await self._call(self.kv.create, key, value)
            except nats.js.errors.KeyNotFoundError:
                continue
        raise nats.js.errors.KeyWrongLastSequenceError(description=f"{key} keeps changing")

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        return await self._call(self.kv.update, key, value, last=last)

    async def delete(self, key: str, last: int | None = None) -> bool:
        return await self._call(self.kv.delete, key, last=last)


def member_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Lease:
    """This member's hold on one consumer name (see the module docstring)."""

    def __init__(self, kv: KeyValue | RetryingKV, key: str, mode: Mode, member: str,
                 label: str) -> None:
        self.kv = kv
        self.key = key
        self.mode = mode
        self.member = member
        self.label = label  # "consumer 'c1' on topic 't'" for messages
        self.revision = 0
        self.held = False

    def _record(self, members: dict[str, float]) -> bytes:
        return orjson.dumps({"mode": self.mode.value, "members": members})

    async def _read(self) -> tuple[dict[str, Any], int] | None:
        try:
            entry = await self.kv.get(self.key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        try:
            record = orjson.loads(entry.value or b"{}")
        except orjson.JSONDecodeError:
            record = {}
        now = time.time()
        members = {m: t for m, t in record.get("members", {}).items() if t > now}
        return {"mode": record.get("mode", ""), "members": members}, entry.revision or 0

    def _conflict(self, mode: str) -> Conflict:
        if mode == self.mode.value == Mode.EXCLUSIVE.value:
            return Conflict(f"{self.label} is already open in exclusive mode")
        return Conflict(f"{self.label} is open in {mode} mode")

    async def acquire(self) -> bool:
        """Take the lease (exclusive, standby); False if a standby must wait for it."""
        try:
            return await self._acquire()
        except LakeportError:
            raise
        except Exception as exc:
            raise translate(exc, f"cannot take the lease of {self.label}") from exc

    async def _acquire(self) -> bool:
        if self.mode is Mode.SHARED:
            return await self._join()
        for _ in range(_CAS_TRIES):
            try:
                self.revision = await self.kv.create(self.key, self._record(self._me()))
                self.held = True
                return True
            except nats.js.errors.KeyWrongLastSequenceError:
                current = await self._read()
            if current is None:
                continue
            record, revision = current
            if self.member in record["members"]:  # our create went through unanswered
                self.revision, self.held = revision, True
                return True
            if not record["members"]:
                # every holder expired but the entry has not aged out yet: take it over
                try:
                    self.revision = await self.kv.update(
                        self.key, self._record(self._me()), last=revision
                    )
                    self.held = True
                    return True
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue
            if self.mode is Mode.EXCLUSIVE or record["mode"] != self.mode.value:
                if await self._outlived(record, revision):
                    continue  # the holder died: its entry is free now
                raise self._conflict(record["mode"])
            return False
        return False

    async def _outlived(self, record: dict[str, Any], revision: int) -> bool:
        """Watch a held entry until its holders' expiry: True if nobody refreshed it."""
        ends = max(record["members"].values())
        log.info("%s: waiting up to %.1fs for the lease of a %s member that may have died",
                 self.label, max(0.0, ends - time.time()), record["mode"])
        while time.time() < ends:
            await asyncio.sleep(min(WATCH_EVERY, max(0.0, ends - time.time())))
            current = await self._read()
            if current is None:
                return True
            if current[1] != revision:
                return not current[0]["members"]  # refreshed: the holder is alive
        return True

    def _me(self) -> dict[str, float]:
        return {self.member: time.time() + LEASE_TTL}

    async def _join(self) -> bool:
        for _ in range(_CAS_TRIES):
            current = await self._read()
            try:
                if current is None:
                    self.revision = await self.kv.create(self.key, self._record(self._me()))
                else:
                    record, revision = current
                    if record["members"] and record["mode"] != Mode.SHARED.value:
                        if await self._outlived(record, revision):
                            continue
                        raise self._conflict(record["mode"])
                    members = {**record["members"], **self._me()}
                    self.revision = await self.kv.update(
                        self.key, self._record(members), last=revision
                    )
                self.held = True
                return True
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        raise Conflict(f"cannot join {self.label}: its lease keeps changing")

    async def refresh(self) -> bool:
        """Extend the lease; False if it was lost (expired and taken by another member)."""
        if not self.held:
            return False
        try:
            if self.mode is Mode.SHARED:
                return await self._join()
            self.revision = await self.kv.update(
                self.key, self._record(self._me()), last=self.revision
            )
            return True
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        try:  # gone from the bucket without anyone taking it: hold it again
            if await self._read() is None:
                self.revision = await self.kv.create(self.key, self._record(self._me()))
                return True
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        self.held = False
        return False

    async def release(self) -> None:
        """Give the lease up so a standby can take over at once."""
        if not self.held:
            return
        self.held = False
        if self.mode is not Mode.SHARED:
            try:
                await self.kv.delete(self.key, last=self.revision)
            except nats.js.errors.APIError:
                pass  # no longer ours: it expired and was taken over
            return
        for _ in range(_CAS_TRIES):
            current = await self._read()
            if current is None:
                return
            record, revision = current
            record["members"].pop(self.member, None)
            try:
                if record["members"]:
                    await self.kv.update(self.key, self._record(record["members"]), last=revision)
                else:
                    await self.kv.delete(self.key, last=revision)
                return
            except nats.js.errors.APIError:  # changed meanwhile (wrong last sequence)
                continue


async def active_members(kv: KeyValue | None, key: str) -> int:
    """How many live members hold the lease entry ``key``."""
    if kv is None:
        return 0
    try:
        entry = await kv.get(key)
        record = orjson.loads(entry.value or b"{}")
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        return 0
    except (orjson.JSONDecodeError, nats.errors.Error):
        return 0
    now = time.time()
    return sum(1 for t in record.get("members", {}).values() if t > now)
