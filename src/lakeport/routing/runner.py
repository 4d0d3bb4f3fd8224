"""A rule at work: read its topic block by block, evaluate, produce the rows, ack.

``RuleRunner(engine, rule, name, to_topic=None, dead_letter_topic=None, actions=None)`` reads
the rule's topic with a durable consumer named ``rule.<name>`` (position ``unread``) and, for
each block (:meth:`RuleRunner.step`; :meth:`RuleRunner.run` loops until its ``stop`` event is
set):

1. evaluates the block with :meth:`Rule.evaluate` (one DuckDB query, no Python per message);
2. hands every output row, as one JSON object without the internal columns ``_seqno``,
   ``_window_start`` and ``_window_end`` (select ``window_start()`` / ``window_end()`` to
   have them in the row), to each of its actions at once (:mod:`lakeport.routing.actions`;
   ``to_topic`` is a topic action) and waits until every one confirmed. Message ids make a
   replay store nothing twice (the engine drops a ``msg_id`` it stored within the topic's
   dedup window): ``rule:<name>:<input seqno>`` for a rule without a window, and
   ``rule:<name>:<window start, epoch µs>:<group key values as JSON>`` for a window row
   (when a group key is not selected as a column, the row's place among the rows of its
   window, which the rule orders by the keys, stands in for the key values);
3. produces each error row (payload unreadable, a field missing, the statement failing on
   it) to the dead-letter topic (default ``dead-letter.rule.<name>``) as the original
   message with ``dead-letter-*`` headers giving the reason (:mod:`lakeport.streams.dead_letters`),
   and each row an action refused for good as its JSON with ``dead-letter-action`` and
   ``dead-letter-reason`` headers;
4. window rules only: produces ``{"acked": <block's last seqno>, "state": <base64 of
   Rule.state()>, "statement": <digest of the SQL>}`` to the state topic ``rule-state.<name>``;
5. acks the block's last seqno: only after every produce above was confirmed durable.

Restart protocol (:meth:`RuleRunner.open`): the consumer resumes after its last ack; for a
window rule the last message of ``rule-state.<name>`` is read:

- its ``acked`` equals the consumer's ack: the state is restored and reading goes on (a state
  saved for another statement, after the rule was updated, is not: its windows start empty);
- its ``acked`` is beyond the consumer's ack (the process died between steps 4 and 5): the
  outputs of that block were produced before the state, so they are durable; the runner
  acks up to ``acked`` first and restores the state, so the block is not counted twice;
- no state and no ack: a fresh rule; any other mismatch (state lost or older than the ack)
  raises :class:`~lakeport.errors.Invalid` rather than lose or double-count a window.

A crash anywhere before step 5 replays the block: rows and dead letters come again with the
same message ids and are dropped by the engine's dedup, the state is recomputed from the
previous one. Stats: :attr:`RuleRunner.stats` (in, out, dropped, late, errors, errors per
action, blocks) and :meth:`RuleRunner.info` (with the lag and the rate).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from lakeport.errors import Invalid, NotFound, Transient
from lakeport.routing.actions import Action, Failures, TopicSink
from lakeport.routing.bridge import Backoff, RateMeter
from lakeport.routing.rule import Rule, RuleOutput
from lakeport.streams.base import Consumer, EndOfTopic, Engine, Producer
from lakeport.streams.block import MessageBlock
from lakeport.streams.dead_letters import OPTIONS as DEAD_LETTER_OPTIONS
from lakeport.streams.dead_letters import REASON_CHARS, send_dead_letters
from lakeport.streams.types import Message

log = logging.getLogger("lakeport.routing")
INTERNAL = ("_seqno", "_window_start", "_window_end")


@dataclass
class RunnerStats:
    """What a runner did since it started (``lag``: :meth:`RuleRunner.lag`)."""

    blocks: int = 0
    rows_in: int = 0
    rows_out: int = 0
    dropped: int = 0  # by WHERE
    late: int = 0  # window rules: rows for windows already emitted
    errors: int = 0  # input rows sent to the dead-letter topic
    acked: int = 0
    action_errors: dict[str, int] = field(default_factory=dict)  # rows refused, per action

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _us(column: pa.ChunkedArray) -> list[int]:
    """Epoch microseconds of a timestamp column."""
    return pc.cast(pc.cast(column, pa.timestamp("us", "UTC")), pa.int64()).to_pylist()


def plain(value: Any) -> Any:
    """A value orjson can write (datetimes are written by orjson itself)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        orjson.dumps(value)
        return value
    except TypeError:
        return str(value)


class RuleRunner:
    """Runs one :class:`Rule` from its topic to ``to_topic`` (see the module's docstring)."""

    def __init__(self, engine: Engine, rule: Rule, name: str, to_topic: str | None = None,
                 dead_letter_topic: str | None = None,
                 actions: list[Action] | None = None) -> None:
        self.engine = engine
        self.rule = rule
        self.name = name
        self.actions = list(actions or [])
        if to_topic is not None:
            self.actions.append(TopicSink(engine, f"rule.{name}", to_topic))
        if not self.actions:
            raise Invalid(f"rule {name!r} has no action: give to_topic or actions")
        self.last_error: str | None = None
        self._fresh = rule.state()  # what a rule with no saved state starts from
        self.statement = hashlib.blake2b(rule.query.sql.encode(), digest_size=8).hexdigest()
        self.dead_letter_topic = dead_letter_topic or f"dead-letter.rule.{name}"
        self.state_topic = f"rule-state.{name}"
        self.consumer_name = f"rule.{name}"
        self.stats = RunnerStats()
        self._consumer: Consumer | None = None
        self._meter = RateMeter()
        self._dead: Producer | None = None
        self._state: Producer | None = None
        self._opened = False
        query = rule.query
        # the output column that is each group key as it is, when selected
        self._key_columns: list[str] | None = None
        if query.window is not None:
            columns = []
            for i in range(len(query.group_keys)):
                name_i = next((n for sql, n in zip(query.projections, query.names, strict=True)
                               if sql == f'"__g{i}"'), None)
                if name_i is None:
                    columns = None
                    break
                columns.append(name_i)
            self._key_columns = columns

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the consumer and the producers, and resume the window state (restart
        protocol in the module's docstring)."""
        if self._opened:
            return
        prefix = f"rule.{self.name}"
        self._consumer = self._make_consumer()
        self._dead = self.engine.producer(prefix, self.dead_letter_topic,
                                          options=DEAD_LETTER_OPTIONS)
        try:
            for action in self.actions:
                await action.open()
            await self._dead.open()
            await self._consumer.open()
            if self.rule.windows is not None:
                self._state = self.engine.producer(prefix, self.state_topic)
                await self._state.open()
                await self._resume()
        except BaseException:
            await self.close()
            raise
        self.stats.acked = self._consumer.acked
        self._opened = True

    def _make_consumer(self) -> Consumer:
        return self.engine.consumer(self.consumer_name, self.rule.topic, position="unread",
                                    on_no_exists="wait")

    async def _last_state(self) -> dict | None:
        try:
            info = await self.engine.topic_info(self.state_topic)
        except NotFound:
            return None
        if info.last_seqno < 1:
            return None
        async with self.engine.consumer(f"{self.consumer_name}.resume", self.state_topic,
                                        position=f"seqno:{info.last_seqno}", follow=False,
                                        ephemeral=True) as reader:
            message = await reader.recv(timeout=10.0)
        doc = orjson.loads(message.data)
        if not isinstance(doc, dict) or "acked" not in doc or "state" not in doc:
            raise Invalid(f"rule {self.name!r}: the last message of {self.state_topic!r} is "
                          "not a rule state")
        return doc

    async def _resume(self) -> None:
        assert self._consumer is not None
        saved = await self._last_state()
        acked = self._consumer.acked
        self.rule.restore(self._fresh)  # what an earlier open left behind goes
        if saved is None:
            if acked:
                raise Invalid(f"rule {self.name!r}: consumer {self.consumer_name!r} acked "
                              f"seqno {acked} but {self.state_topic!r} holds no window state")
            return
        state_acked = int(saved["acked"])
        if state_acked < acked:
            raise Invalid(f"rule {self.name!r}: the window state in {self.state_topic!r} is "
                          f"for seqno {state_acked}, older than the ack {acked}")
        if saved.get("statement", self.statement) == self.statement:
            self.rule.restore(base64.b64decode(saved["state"]))
        if state_acked > acked:
            # died between saving the state and the ack: that block's rows are durable
            # (and reopen: engines keep reading where the closed-over consumer was)
            await self._consumer.ack(state_acked)
            await self._consumer.close()
            self._consumer = self._make_consumer()
            await self._consumer.open()

    async def close(self) -> None:
        self._opened = False
        for resource in (self._consumer, *self.actions, self._dead, self._state):
            if resource is not None:
                with contextlib.suppress(Exception):
                    await resource.close()

    async def __aenter__(self) -> RuleRunner:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- work ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, max_n: int = 100_000,
                  idle: float = 0.2) -> None:
        """Process blocks until ``stop`` is set (checked at least every ``idle`` seconds).

        Trouble that passes (:class:`~lakeport.errors.Transient`: the engine or a store
        away) closes the runner and opens it again with backoff, which resumes after the last
        ack with the window state saved with it: the block in hand is evaluated again, and
        what it had produced already is dropped by its message ids. ``last_error`` says why
        meanwhile; other errors end the run."""
        backoff = Backoff(0.1, 5.0)
        try:
            while not stop.is_set():
                try:
                    await self.open()
                    while not stop.is_set():
                        await self.step(max_n, timeout=idle)
                        self.last_error = None
                        backoff.reset()
                except Transient as exc:
                    self.last_error = str(exc)
                    await self.close()
                    delay = backoff.next()
                    log.warning("rule %s: %s; again in %.1fs", self.name, exc, delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
        finally:
            await self.close()

    async def step(self, max_n: int = 100_000, timeout: float | None = 0.2) -> int:
        """Process one block of up to ``max_n`` messages (waiting up to ``timeout`` for the
        first); return the number of input messages acked (0 when none came)."""
        await self.open()
        assert self._consumer is not None
        try:
            block = await self._consumer.recv_block(max_n, timeout=timeout)
        except (TimeoutError, EndOfTopic):
            return 0
        if not len(block):
            return 0
        out = self.rule.evaluate(block)
        await self._deliver(out)
        if out.errors:
            await self._dead_letters(block, out)
        last = block.last_seqno
        if self._state is not None:
            state = base64.b64encode(self.rule.state()).decode("ascii")
            await self._state.produce({"acked": last, "state": state,
                                       "statement": self.statement})
        await self._consumer.ack(last)
        stats = self.stats
        stats.blocks += 1
        stats.rows_in += out.rows_in
        stats.rows_out += out.rows_out
        stats.dropped += out.dropped
        stats.late += out.late
        stats.errors += len(out.errors)
        stats.acked = last
        return len(block)

    def _msg_ids(self, table: pa.Table) -> list[str]:
        prefix = f"rule:{self.name}:"
        if self.rule.windows is None:
            return [f"{prefix}{s}" for s in table.column("_seqno").to_pylist()]
        starts = _us(table.column("_window_start"))
        if self._key_columns is not None:
            keys = zip(*(table.column(c).to_pylist() for c in self._key_columns), strict=True) \
                if self._key_columns else iter([()] * table.num_rows)
            return [f"{prefix}{ws}:{orjson.dumps(list(k), default=str).decode()}"
                    for ws, k in zip(starts, keys, strict=True)]
        ids, place, previous = [], 0, None
        for ws in starts:  # rows come ordered by window start, then keys
            place = place + 1 if ws == previous else 0
            previous = ws
            ids.append(f"{prefix}{ws}:#{place}")
        return ids

    async def _deliver(self, out: RuleOutput) -> None:
        """Hand the rows to every action at once; the rows an action refused for good go
        to the dead-letter topic."""
        table = out.table
        if not table.num_rows:
            return
        ids = self._msg_ids(table)
        rows = table.drop_columns([c for c in INTERNAL if c in table.column_names]).to_pylist()
        try:
            texts = [orjson.dumps(r) for r in rows]
        except TypeError:  # a value orjson does not write (a decimal, say)
            rows = [plain(r) for r in rows]
            texts = [orjson.dumps(r) for r in rows]
        results: list[Failures] = await asyncio.gather(
            *(action.send(rows, texts, ids) for action in self.actions))
        for action, failed in zip(self.actions, results, strict=True):
            if failed:
                await self._refused(action.label, failed, texts, ids)

    async def _refused(self, label: str, failed: Failures, texts: list[bytes],
                       ids: list[str]) -> None:
        assert self._dead is not None
        errors = self.stats.action_errors
        errors[label] = errors.get(label, 0) + len(failed)
        await asyncio.gather(*(self._dead.produce(
            texts[i], msg_id=f"rule:{self.name}:dead:{label}:{ids[i]}",
            headers={"dead-letter-topic": self.rule.topic, "dead-letter-rule": self.name,
                     "dead-letter-action": label,
                     "dead-letter-reason": reason[:REASON_CHARS]})
            for i, reason in failed))

    async def _dead_letters(self, block: MessageBlock, out: RuleOutput) -> None:
        assert self._dead is not None
        reasons = {e.seqno: e.reason for e in out.errors}
        messages: list[Message] = [m for m in block.messages() if m.seqno in reasons]
        await send_dead_letters(self._dead, self.rule.topic,
                                [(m, reasons[m.seqno]) for m in messages],
                                f"rule:{self.name}:dead:", {"rule": self.name})

    async def lag(self) -> int:
        """Messages on the rule's topic after its last ack."""
        return 0 if self._consumer is None else await self._consumer.lag()

    async def info(self) -> dict[str, Any]:
        """The stats with the lag and the rate (input messages per second over the last
        few seconds: sample it about once a second)."""
        return {**self.stats.as_dict(), "lag": await self.lag(),
                "rate": round(self._meter.rate(self.stats.rows_in), 1),
                "last_error": self.last_error}


__all__ = ["RuleRunner", "RunnerStats", "plain"]
