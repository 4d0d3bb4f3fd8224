"""Consumer of the ``nats://`` engine: a durable pull consumer per consumer name.

exclusive and standby use ``AckPolicy.ALL`` (acking one message acks all before it);
shared uses ``AckPolicy.EXPLICIT`` and acks each delivered message up to the seqno. Pull
requests are sent on an inbox of this consumer and the delivered messages are buffered; the
messages delivered but not acked are kept by seqno so an ack can name them.

Failover: while a cluster elects a new leader for the stream or the durable, requests go
unanswered. Pull requests are sent again after a pause, a topic check that gets no answer
is not a deleted topic, and an ack is sent again (acks are idempotent) until the engine's
``failover_timeout``; the durable keeps its ack floor, so delivery goes on from there.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from typing import Any

import nats.errors
import orjson
from nats.aio.msg import Msg

from lakeport.errors import Closed, Conflict, LakeportError, NotFound, Unavailable
from lakeport.streams.base import Consumer, ConsumerSpec
from lakeport.streams.jetstream import api
from lakeport.streams.jetstream.codec import (
    acked_of,
    consumer_description,
    encode_token,
    format_time_ns,
    reply_fields,
    reply_pending,
    split_headers,
    stream_name,
)
from lakeport.streams.jetstream.failover import NO_LEADER_PAUSE, FailoverMixin
from lakeport.streams.jetstream.lease import REFRESH_EVERY, Lease, RetryingKV, member_id
from lakeport.streams.types import Message, Mode

PULL_EXPIRES = 5.0  # seconds a pull request waits on the server
SHARED_ACK_WAIT = 30.0  # redelivery to other members after a shared member died
EPHEMERAL_INACTIVE = 60.0  # seconds before the server drops an ephemeral reader's durable
EXCLUSIVE_ACK_WAIT = 86_400.0  # exclusive/standby re-place the durable when they take over
TAKEOVER_POLL = 0.25
BATCH_GRACE = 0.02  # seconds to wait for the rest of a batch that the server is sending
ACK_ANSWER = 5.0  # seconds to wait for the server to confirm an ack, per attempt


class JetStreamConsumer(FailoverMixin, Consumer):
    """One member of a consumer name (see the module docstring)."""

    engine: Any  # JetStreamEngine

    def __init__(self, engine: Any, spec: ConsumerSpec) -> None:
        super().__init__(engine, spec)
        self._stream = stream_name(spec.topic)
        self._durable = encode_token(spec.name)
        self._label = f"consumer {spec.name!r} on topic {spec.topic!r}"
        self._explicit = spec.mode is Mode.SHARED
        self._held: dict[int, Msg] = {}  # delivered to the base class, not acked yet
        self._ready: deque[Msg] = deque()  # received, not handed out yet
        self._event = asyncio.Event()
        self._sub: Any = None
        self._inbox = ""
        self._requests = itertools.count(1)
        self._request = ""  # reply subject of the pull request in flight ("" = none)
        self._requested = 0  # messages still expected for it
        self._request_ends = 0.0  # when to give up on it (a server restart loses it)
        self._pull_after = 0.0  # no pull before this (a pause after "no leader")
        self._no_leader = 0  # "no leader" answers in a row
        self._deleted = False
        self._active = False
        self._lease: Lease | None = None
        self._lost: LakeportError | None = None
        self._next_takeover = 0.0
        self._last_check = time.monotonic()
        self._keeper: asyncio.Task[None] | None = None
        self._ack_wait = SHARED_ACK_WAIT  # of the durable, as the server has it

    # -- JetStream consumer ------------------------------------------------------------
    def _config(self, start: dict[str, Any]) -> dict[str, Any]:
        ack_wait = self.spec.ack_timeout or (
            SHARED_ACK_WAIT if self._explicit else EXCLUSIVE_ACK_WAIT
        )
        return {
            "durable_name": self._durable,
            "description": consumer_description(self.name, self.spec.mode),
            "ack_policy": "explicit" if self._explicit else "all",
            "ack_wait": int(ack_wait * 1e9),
            "max_deliver": -1,
            "max_ack_pending": -1,
            "max_waiting": 512,
            "replay_policy": "instant",
            # an ephemeral reader's durable goes away by itself if its process dies
            **({"inactive_threshold": int(EPHEMERAL_INACTIVE * 1e9)} if self.spec.ephemeral
               else {}),
            **start,
        }

    def _start(self, seqno: int | None = None) -> dict[str, Any]:
        """Deliver policy fields for ``seqno`` or, if None, for the consumer's position."""
        if seqno is not None:
            return {"deliver_policy": "by_start_sequence", "opt_start_seq": max(1, seqno)}
        position = self.spec.position
        if position.kind == "seqno":
            return {"deliver_policy": "by_start_sequence", "opt_start_seq": position.seqno}
        if position.kind == "time":
            return {"deliver_policy": "by_start_time",
                    "opt_start_time": format_time_ns(position.timestamp_ns)}
        return {"deliver_policy": "all"}

    async def _consumer_info(self) -> dict[str, Any] | None:
        try:
            return await api.request(
                self.engine.nc, f"CONSUMER.INFO.{self._stream}.{self._durable}", None,
                self._label, retry_for=self.engine.failover_timeout,
            )
        except NotFound as exc:
            if api.err_code(exc) == api.STREAM_NOT_FOUND:
                raise Closed(f"topic {self.topic!r} was deleted") from exc
            return None

    async def _create(self, start: dict[str, Any], replace: bool) -> dict[str, Any]:
        nc = self.engine.nc
        if replace:
            # stop listening first: the old durable's pull request ends with "409 deleted"
            await self._unsubscribe()
            self._inbox = ""
            try:
                await api.request(nc, f"CONSUMER.DELETE.{self._stream}.{self._durable}",
                                  None, self._label, retry_for=self.engine.failover_timeout)
            except NotFound:
                pass
        payload = {"stream_name": self._stream, "config": self._config(start)}
        return await api.request(
            nc, f"CONSUMER.DURABLE.CREATE.{self._stream}.{self._durable}", payload, self._label,
            retry_for=self.engine.failover_timeout,
        )

    async def _place(self, takeover: bool) -> int:
        """Create or reuse the durable as this member's mode and position need; the acked seqno."""
        info = await self._consumer_info()
        start: dict[str, Any] | None
        if info is None:
            if self.spec.position.kind == "end":
                start = self._start(await self._last_seqno() + 1)
            else:
                start = self._start()
        else:
            floor = acked_of(info)
            explicit_position = self.spec.position.kind != "unread" and not takeover
            if self._explicit:
                # members of a shared name keep the durable; it is re-placed only when
                # it was last used in another mode
                explicit = info["config"].get("ack_policy") == "explicit"
                start = None if explicit else self._start(floor + 1)
            elif explicit_position:
                if self.spec.position.kind == "end":
                    start = self._start(await self._last_seqno() + 1)
                else:
                    start = self._start()
            elif self._reusable(info):
                start = None  # nothing delivered and unacked: resume the durable as it is
            else:
                start = self._start(floor + 1)
        if start is not None:
            try:
                info = await self._create(start, replace=info is not None)
            except LakeportError:
                if not self._explicit:
                    raise
                info = await self._consumer_info()  # another shared member created it
                if info is None:
                    raise
        assert info is not None
        self._ack_wait = info["config"].get("ack_wait", 0) / 1e9 or SHARED_ACK_WAIT
        acked = acked_of(info)
        await self._subscribe()
        await self._until_pulls_answered()
        self._active = True
        self._read_upto = acked
        return acked

    def _reusable(self, info: dict[str, Any]) -> bool:
        """True if an exclusive/standby durable can be resumed without re-placing it."""
        config = info["config"]
        wanted = self._config({})
        return (
            config.get("ack_policy") == "all"
            and config.get("ack_wait") == wanted["ack_wait"]
            and config.get("description") == wanted["description"]
            and info.get("num_ack_pending", 0) == 0
        )

    async def _subscribe(self) -> None:
        """A fresh inbox for pull requests (messages for an older one are dropped)."""
        if self._sub is not None:
            await self._unsubscribe()
        self._ready.clear()
        self._held.clear()
        self._request, self._requested = "", 0
        self._deleted = False
        self._inbox = inbox = self.engine.nc.new_inbox()

        async def on_msg(msg: Msg) -> None:
            if self._inbox == inbox:
                self._on_msg(msg)

        self._sub = await self.engine.nc.subscribe(inbox + ".*", cb=on_msg)

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    # -- lifecycle ---------------------------------------------------------------------
    async def _open(self) -> int:
        kv = await self.engine.leases()
        self._lease = Lease(RetryingKV(kv, self.engine.failover_timeout),
                            f"{self._stream}.{self._durable}", self.spec.mode,
                            member_id(), self._label)
        if await self._lease.acquire():
            try:
                acked = await self._place(takeover=False)
            except BaseException:
                await self._lease.release()
                raise
        else:
            info = await self._consumer_info()
            acked = acked_of(info) if info else 0
            self._read_upto = acked
        self._keeper = asyncio.create_task(self._keep())
        return acked

    async def _keep(self) -> None:
        """Refresh the lease; keep shared messages in progress while they are held."""
        last_progress = time.monotonic()
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            lease = self._lease
            try:
                if lease is not None and lease.held and not await lease.refresh():
                    self._on_lease_lost()
                now = time.monotonic()
                if self._explicit and self.spec.ack_timeout is None and \
                        now - last_progress > self._ack_wait / 3:
                    last_progress = now
                    for msg in [*self._held.values(), *self._ready]:
                        await msg.in_progress()
            except asyncio.CancelledError:
                raise
            except Exception:  # a connection hiccup: try again on the next round
                nc = self.engine._nc
                if nc is None or nc.is_closed:
                    return  # the engine was closed under this consumer

    def _on_lease_lost(self) -> None:
        if self.spec.mode is Mode.STANDBY:
            self._active = False  # wait to take over again, at the last ack
            self._ready.clear()
            self._held.clear()
        else:
            self._lost = Conflict(f"{self._label} lost its lease (the process stalled too long)")
        self._event.set()

    async def _close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
        try:
            if self._explicit:
                await self._nak_all()  # other members get them now, not after ack_wait
            await self._unsubscribe()
            if self.spec.ephemeral:
                await api.request(self.engine.nc,
                                  f"CONSUMER.DELETE.{self._stream}.{self._durable}", None,
                                  self._label)
            if self._lease is not None:
                await self._lease.release()
        except Exception:
            pass  # closing never fails: the lease expires by itself

    # -- pulling -----------------------------------------------------------------------
    def _on_msg(self, msg: Msg) -> None:
        if msg.reply:
            self._no_leader = 0
            self._ready.append(msg)
            if self._requested > 0:
                self._requested -= 1
                if self._requested == 0:
                    self._request = ""
        else:
            # a status of a pull request: 408 expired, 404 no messages, 409 deleted/...
            headers = msg.headers or {}
            if msg.subject == self._request:
                self._request, self._requested = "", 0
                if headers.get("Status") == "503":  # no leader right now: pull again soon
                    first, most = NO_LEADER_PAUSE
                    pause = min(most, first * 2 ** self._no_leader)
                    self._no_leader += 1
                    self._pull_after = time.monotonic() + pause
                else:
                    self._no_leader = 0
            if headers.get("Status") == "409" and "Deleted" in headers.get("Description", ""):
                self._deleted = True
        self._event.set()

    async def _pull(self, max_n: int, probe: bool = False) -> None:
        self._request = f"{self._inbox}.{next(self._requests)}"
        self._requested = max_n
        self._request_ends = time.monotonic() + PULL_EXPIRES + 1.0
        body = orjson.dumps({"batch": max_n, "no_wait": True, "max_bytes": 1} if probe else
                            {"batch": max_n, "expires": int(PULL_EXPIRES * 1e9)})
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._durable}"
        try:
            await self.engine.nc.publish(subject, body, reply=self._request)
        except Exception as exc:
            self._request, self._requested = "", 0
            raise api.translate(exc, self._label) from exc

    async def _fetch(self, max_n: int, timeout: float | None) -> list[Message]:
        wait = 0.5 if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + wait
        if self._lost is not None:
            raise self._lost
        if not self._active and not await self._take_over(wait):
            return []
        while True:
            self._event.clear()  # before anything that awaits, so no wake-up is missed
            if self._gap:
                await self._mend_gap()
                continue
            if self._ready:
                await self._await_rest_of_batch(max_n)
                messages = self._take(max_n)
                if messages:
                    return messages
                continue  # only redeliveries of held messages: wait for more
            if self._deleted:
                await self._on_durable_deleted()
                return []
            now = time.monotonic()
            if (not self._request and now >= self._pull_after) or now > self._request_ends:
                await self._pull(max_n)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self._check_topic()
                return []
            if self._ready:
                continue
            if not self._request:  # paused after "no leader": wake up to pull again
                remaining = min(remaining, max(0.0, self._pull_after - time.monotonic()))
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                pass
            if self._lost is not None:
                raise self._lost
            if not self._active:
                return []

    async def _await_rest_of_batch(self, max_n: int) -> None:
        """Wait a moment for messages the server is still sending for this request.

        The ack subject of each message says how many more the consumer has pending, so
        a batch that arrives in pieces is returned whole, and a follower waits for nothing.
        """
        ready = self._ready
        while len(ready) < max_n and self._requested > 0 and reply_pending(ready[-1].reply):
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), BATCH_GRACE)
            except TimeoutError:
                return

    async def _on_durable_deleted(self) -> None:
        """After "409 consumer deleted": Closed if the topic or the durable is gone for good.

        A standby whose durable was re-created by a member that took over goes back to
        waiting; other modes cannot continue.
        """
        await self._check_topic(force=True, durable=False)
        if self.spec.mode is not Mode.STANDBY:
            raise Closed(f"{self._label} was deleted")
        self._deleted = False
        self._on_lease_lost()
        if self._lease is not None:
            self._lease.held = False

    async def _check_topic(self, force: bool = False, durable: bool = True) -> None:
        """Raise Closed if the topic was deleted (checked about once a second while idle)."""
        now = time.monotonic()
        if not force and now - self._last_check < 1.0:
            return
        self._last_check = now
        try:
            await self.engine.stream_info(self.topic)
        except NotFound as exc:
            raise Closed(f"topic {self.topic!r} was deleted") from exc
        except Unavailable:
            if not force:
                return  # no answer during an election is not a deleted topic
            raise
        if durable and self._deleted:
            raise Closed(f"{self._label} was deleted")

    def _take(self, max_n: int) -> list[Message]:
        ready, held, fmt = self._ready, self._held, self.format
        messages: list[Message] = []
        while ready and len(messages) < max_n:
            msg = ready.popleft()
            seqno, _, stamp = reply_fields(msg.reply)
            if self._explicit:
                if seqno in held:  # redelivered while still held here
                    held[seqno] = msg
                    continue
            elif seqno <= self._read_upto:
                continue  # redelivered before the base class rewound
            elif self._gap_before(seqno, messages):
                ready.appendleft(msg)
                break
            held[seqno] = msg
            producer, headers, key = split_headers(msg.headers)
            messages.append(Message(seqno, stamp, producer, msg.data, fmt, headers, key))
        return messages

    async def _take_over(self, wait: float) -> bool:
        """A waiting standby tries to take the lease; True once it is active."""
        now = time.monotonic()
        lease = self._lease
        if lease is not None and now >= self._next_takeover:
            self._next_takeover = now + TAKEOVER_POLL
            if await lease.acquire():
                try:
                    self._acked = await self._place(takeover=True)
                except BaseException:
                    await lease.release()
                    raise
                return True
        await self._check_topic()
        await asyncio.sleep(min(wait, TAKEOVER_POLL))
        return False

    # -- acks --------------------------------------------------------------------------
    async def _ack(self, seqno: int) -> None:
        held = self._held
        done = [s for s in held if s <= seqno]
        if not done:
            return
        msgs = [held.pop(s) for s in done]
        nc = self.engine.nc
        what = f"cannot ack seqno {seqno} of {self._label}"
        try:
            if self._explicit:
                for msg in msgs[:-1]:
                    await nc.publish(msg.reply, b"+ACK")
        except Exception as exc:
            raise api.translate(exc, what) from exc
        # the last ack waits for the server, so an ack is durable when this returns; it is
        # sent again while a new leader is elected (acking twice is harmless)
        gives_up = time.monotonic() + self.engine.failover_timeout
        pause = 0.05
        while True:
            try:
                await nc.request(msgs[-1].reply, b"+ACK", timeout=ACK_ANSWER)
                return
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError,
                    TimeoutError) as exc:
                if await self._durable_gone():
                    raise Closed(f"{self._label} no longer exists") from exc
                if time.monotonic() > gives_up:
                    raise api.translate(exc, what) from exc
            except Exception as exc:
                raise api.translate(exc, what) from exc
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _nak_all(self) -> None:
        msgs = [*self._held.values(), *self._ready]
        self._held.clear()
        self._ready.clear()
        for msg in msgs:
            await self.engine.nc.publish(msg.reply, b"-NAK")

    async def _rewind(self, seqno: int) -> None:
        if not self._active:
            return
        if self._explicit:
            await self._nak_all()
        else:
            # re-place the durable at seqno: the server then delivers from there in order
            info = await self._create(self._start(seqno), replace=True)
            await self._subscribe()
            self._read_upto = acked_of(info)

    async def _last_seqno(self) -> int:
        try:
            info = await self.engine.stream_info(self.topic)
        except NotFound as exc:
            raise Closed(f"topic {self.topic!r} was deleted") from exc
        return info["state"]["last_seq"]

    async def lag(self) -> int:
        """Messages not acked yet: pending on the durable plus delivered but unacked."""
        info = await self._consumer_info()
        if info is None:
            return max(0, await self._last_seqno() - self._acked)
        return info.get("num_pending", 0) + info.get("num_ack_pending", 0)
