"""Bookkeeping for ``shared`` consumers: members of one name split a topic's messages.

Each member claims seqnos; a claimed seqno is not handed to another member until the
claim is released (the member closed, died or hit its ack timeout). Acks are cumulative
per member. ``acked`` is the low watermark: every seqno up to it is done.
"""

from __future__ import annotations

import bisect
import time
from typing import Any


class SharedGroup:
    """The claim table of one shared consumer name (plain data, JSON-serializable)."""

    def __init__(self, acked: int = 0) -> None:
        self.acked = acked
        self.next = acked + 1
        self.done: set[int] = set()
        self.claims: dict[str, list[int]] = {}
        self.redeliver: list[int] = []
        self.since: dict[str, float] = {}  # member -> wall time its oldest unacked claim began

    def claim(self, member: str, n: int, last_seqno: int, first_seqno: int = 1,
              stale_after: float | None = None) -> list[int]:
        """Give ``member`` up to ``n`` seqnos: released ones first, then new ones.

        With ``stale_after`` (the ack timeout, seconds), claims of members that acked nothing
        for that long are released first, so a stalled member's messages go to the others.
        """
        if stale_after is not None:
            self.release_stale(stale_after)
        if self.next < first_seqno:
            self.next = first_seqno
        taken = [s for s in self.redeliver[:n] if s >= first_seqno]
        del self.redeliver[:n]
        if len(taken) < n and self.next <= last_seqno:
            upto = min(last_seqno, self.next + n - len(taken) - 1)
            taken.extend(range(self.next, upto + 1))
            self.next = upto + 1
        if taken:
            owned = self.claims.setdefault(member, [])
            if not owned:
                self.since[member] = time.time()
            owned.extend(taken)
            owned.sort()
        return taken

    def ack(self, member: str, seqno: int) -> None:
        """Mark every seqno up to ``seqno`` claimed by ``member`` as done."""
        owned = self.claims.get(member, [])
        cut = bisect.bisect_right(owned, seqno)
        self.done.update(owned[:cut])
        del owned[:cut]
        if owned:
            self.since[member] = time.time()
        else:
            self.since.pop(member, None)
        while self.acked + 1 in self.done:
            self.acked += 1
            self.done.discard(self.acked)
        # seqnos nobody holds below the watermark need no bookkeeping
        if self.next <= self.acked:
            self.next = self.acked + 1

    def release(self, member: str) -> None:
        """Put ``member``'s unacked claims back for others (close, death, ack timeout)."""
        owned = self.claims.pop(member, [])
        self.since.pop(member, None)
        if owned:
            self.redeliver = sorted(set(self.redeliver).union(owned))

    def release_stale(self, stale_after: float, now: float | None = None) -> list[str]:
        """Release the claims of members that acked nothing for ``stale_after`` seconds."""
        now = time.time() if now is None else now
        stale = [m for m, since in self.since.items()
                 if now - since >= stale_after and self.claims.get(m)]
        for member in stale:
            self.release(member)
        return stale

    def members(self) -> list[str]:
        return list(self.claims)

    def to_json(self) -> dict[str, Any]:
        return {
            "acked": self.acked,
            "next": self.next,
            "done": sorted(self.done),
            "claims": self.claims,
            "redeliver": self.redeliver,
            "since": self.since,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SharedGroup:
        group = cls(data.get("acked", 0))
        group.next = data.get("next", group.acked + 1)
        group.done = set(data.get("done", []))
        group.claims = {k: list(v) for k, v in data.get("claims", {}).items()}
        group.redeliver = list(data.get("redeliver", []))
        group.since = {k: float(v) for k, v in data.get("since", {}).items()}
        return group
