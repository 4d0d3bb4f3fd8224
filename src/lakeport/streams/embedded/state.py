"""Consumer state of the embedded engine, shared by every process through files.

Per consumer name, in ``topics/<topic>/consumers/``:

- ``<name>.ack``    the acked seqno (16 bytes, checksummed, rewritten in place);
- ``<name>.lock``   held (flock) while the name is open: exclusive/standby take it
                    exclusively, shared members take it shared, so modes cannot mix;
- ``<name>.owner``  JSON with the mode and pid of the holder(s), for messages and info;
- ``<name>.shared.json`` + ``<name>.shlock``  the claim table of a shared name;
- ``<name>.members/<member>.lock``  held by each live shared member.

Acks are written without fsync: they survive a crashed process; after a power loss a
consumer may see a few messages again (at-least-once), never skip one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson

from lakeport.processes import pid_alive
from lakeport.streams.shared import SharedGroup
from lakeport.streams.types import ConsumerInfo

_ACK = struct.Struct("<QI")


class ConsumerDir:
    """The ``consumers/`` folder of one topic."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def file(self, name: str, suffix: str) -> Path:
        return self.path / f"{name}{suffix}"

    # -- acks --------------------------------------------------------------------------
    def open_ack(self, name: str) -> int:
        return os.open(self.file(name, ".ack"), os.O_RDWR | os.O_CREAT, 0o644)

    @staticmethod
    def read_ack(fd: int) -> int:
        raw = os.pread(fd, _ACK.size, 0)
        if len(raw) != _ACK.size:
            return 0
        seqno, crc = _ACK.unpack(raw)
        return seqno if zlib.crc32(raw[:8]) == crc else 0

    @staticmethod
    def write_ack(fd: int, seqno: int) -> None:
        raw = struct.pack("<Q", seqno)
        os.pwrite(fd, raw + struct.pack("<I", zlib.crc32(raw)), 0)

    # -- mode locks --------------------------------------------------------------------
    def try_lock(self, fd: int, shared: bool) -> bool:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            return False
        return True

    def owner(self, name: str) -> dict:
        try:
            return orjson.loads(self.file(name, ".owner").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}

    def set_owner(self, name: str, mode: str, pid: int, ephemeral: bool = False) -> None:
        owner = self.owner(name)
        pids = [p for p in owner.get("pids", []) if p != pid and pid_alive(p)]
        if owner.get("mode") != mode:
            pids = []
        self._write_owner(name, {"mode": mode, "pids": [*pids, pid], "ephemeral": ephemeral})

    def _write_owner(self, name: str, record: dict) -> None:
        tmp = self.file(name, f".owner.{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps(record))
        os.replace(tmp, self.file(name, ".owner"))

    def forget_if_unused(self, name: str) -> None:
        """Delete the state of an ephemeral consumer name once no live process holds it."""
        owner = self.owner(name)
        if any(pid_alive(pid) for pid in owner.get("pids", [])):
            return
        for suffix in (".ack", ".lock", ".owner", ".shared.json", ".shlock"):
            self.file(name, suffix).unlink(missing_ok=True)

    def drop_owner(self, name: str, pid: int) -> None:
        owner = self.owner(name)
        if pid in owner.get("pids", []):
            owner["pids"] = [p for p in owner["pids"] if p != pid and pid_alive(p)]
            self._write_owner(name, owner)

    # -- shared claims -----------------------------------------------------------------
    @contextlib.contextmanager
    def shared_group(self, name: str, start_acked: int) -> Iterator[SharedGroup]:
        """Lock, load, yield and save the claim table of a shared consumer name."""
        fd = os.open(self.file(name, ".shlock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = self.file(name, ".shared.json")
            try:
                group = SharedGroup.from_json(orjson.loads(path.read_bytes()))
            except (FileNotFoundError, orjson.JSONDecodeError):
                group = SharedGroup(start_acked)
            self._reap(name, group)
            yield group
            tmp = self.file(name, f".shared.{os.getpid()}.tmp")
            tmp.write_bytes(orjson.dumps(group.to_json()))
            os.replace(tmp, path)
        finally:
            os.close(fd)

    def members_dir(self, name: str) -> Path:
        path = self.file(name, ".members")
        path.mkdir(exist_ok=True)
        return path

    def _reap(self, name: str, group: SharedGroup) -> None:
        """Release the claims of members whose process is gone."""
        members = self.members_dir(name)
        for member in group.members():
            path = members / f"{member}.lock"
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                group.release(member)
                continue
            try:
                if self.try_lock(fd, shared=False):
                    group.release(member)
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)

    # -- info --------------------------------------------------------------------------
    def infos(self, last_seqno: int) -> list[ConsumerInfo]:
        try:
            names = sorted(p.name[:-4] for p in self.path.iterdir() if p.name.endswith(".ack"))
        except FileNotFoundError:
            return []
        infos = []
        for name in names:
            fd = os.open(self.file(name, ".ack"), os.O_RDONLY)
            try:
                acked = self.read_ack(fd)
            finally:
                os.close(fd)
            owner = self.owner(name)
            active = sum(1 for pid in owner.get("pids", []) if pid_alive(pid))
            if owner.get("ephemeral") and not active:
                self.forget_if_unused(name)  # left behind by a killed throwaway reader
                continue
            infos.append(ConsumerInfo(name, owner.get("mode", "exclusive"), acked,
                                      max(0, last_seqno - acked), active))
        return infos
