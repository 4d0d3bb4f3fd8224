"""What the ``nats://`` consumer does while a cluster changes leaders (see :mod:`.consumer`).

- **A durable just created** answers pulls only once its leader is set up; until then pulls
  are refused with "503 no responders". A member opens once a probe (a pull that does not
  wait and takes no message) is answered, so members of a shared name all pull from the
  start.
- **Messages lost on the way**: a leader that dies after handing messages out may have
  recorded them as delivered before they reached this member. With ``AckPolicy.ALL`` a later
  ack would acknowledge them unread, so a jump in the stream sequence (not explained by
  retention) re-places the durable at the last ack and reads the missing messages again;
  messages this member already handed out get their new reply subjects, so they are neither
  delivered twice nor lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from lakeport.errors import Closed, Unavailable
from lakeport.streams.jetstream.codec import reply_fields

if TYPE_CHECKING:
    from collections import deque

    from nats.aio.msg import Msg

    from lakeport.streams.types import Message

log = logging.getLogger("lakeport.streams.jetstream")

NO_LEADER_PAUSE = (0.02, 0.5)
"""Seconds before pulling again after "503 no responders": the first pause, doubled on every
503 in a row up to the second."""


class FailoverMixin:
    """The failover parts of :class:`~lakeport.streams.jetstream.consumer.JetStreamConsumer`."""

    _gap = False  # a jump in the stream sequence is waiting to be mended
    _gap_allowed = 0  # a jump up to this seqno is retention, not a loss

    if TYPE_CHECKING:
        engine: Any
        topic: str
        _label: str
        _acked: int
        _read_upto: int
        _request: str
        _no_leader: int
        _pull_after: float
        _event: asyncio.Event
        _ready: deque[Msg]
        _held: dict[int, Msg]

        async def _pull(self, max_n: int, probe: bool = False) -> None: ...
        async def _consumer_info(self) -> dict[str, Any] | None: ...
        async def _create(self, start: dict[str, Any], replace: bool) -> dict[str, Any]: ...
        async def _subscribe(self) -> None: ...
        def _start(self, seqno: int | None = None) -> dict[str, Any]: ...

    async def _until_pulls_answered(self) -> None:
        """Wait until the durable answers pulls (see the module docstring)."""
        gives_up = time.monotonic() + self.engine.failover_timeout
        while True:
            await self._pull(1, probe=True)
            while self._request:
                if not await self._woken(1.0):
                    self._request = ""  # lost on the way: probe again
                    self._no_leader += 1
            if not self._no_leader:
                return
            if time.monotonic() > gives_up:
                raise Unavailable(f"{self._label}: no NATS server serves it yet")
            await asyncio.sleep(max(0.0, self._pull_after - time.monotonic()))

    async def _woken(self, timeout: float) -> bool:
        self._event.clear()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _durable_gone(self) -> bool:
        """True if the server says the topic or the durable no longer exists (no answer:
        False, an election may be on)."""
        try:
            return await self._consumer_info() is None
        except Closed:
            return True
        except Unavailable:
            return False

    # -- messages lost on the way --------------------------------------------------------
    def _gap_before(self, seqno: int, taken: list[Message]) -> bool:
        """True (and the gap noted) if ``seqno`` skips messages after those taken."""
        expected = (taken[-1].seqno if taken else self._read_upto) + 1
        if seqno > expected and seqno > self._gap_allowed:
            self._gap = True
            return True
        return False

    async def _mend_gap(self) -> None:
        """Read again what a dead leader handed out but this member never got."""
        self._gap = False
        expected = self._read_upto + 1
        info = await self.engine.stream_info(self.topic)
        first = info["state"].get("first_seq", 0)
        if first > expected:  # retention dropped them before they were read
            self._gap_allowed = first
            return
        log.info("%s: messages from seqno %d on were handed out by a NATS leader that died "
                 "before they arrived: reading them again", self._label, expected)
        held = dict(self._held)
        await self._create(self._start(self._acked + 1), replace=True)
        await self._subscribe()
        self._held = held
        stale = set(held)
        gives_up = time.monotonic() + self.engine.failover_timeout
        while stale:
            if not self._request:
                await self._pull(max(1, self._read_upto - self._acked))
            await self._woken(0.5)
            while self._ready:
                seqno = reply_fields(self._ready[0].reply)[0]
                if seqno > self._read_upto:
                    break  # a new message: delivered as usual
                msg = self._ready.popleft()
                if seqno in held:
                    held[seqno] = msg
                stale.discard(seqno)
            if time.monotonic() > gives_up:
                raise Unavailable(f"{self._label}: cannot read again the messages a NATS "
                                  "leader handed out before it died")
