"""Chained steps: consume a topic, transform each message, produce to the next topic.

A step acks its input only after its output is durable, so a crash between the two
repeats work but never loses it; each output's ``msg_id`` is derived from the step name,
the input topic and the input seqno, so repeated work is not stored twice: within the
output topic's dedup window by the engine, and on engines that can find a producer's last
msg_id (the embedded one) whatever the downtime, because a restarted step skips the inputs
whose outputs are already stored. An input whose payload cannot be decoded goes to the
step's dead letter topic and is acked.

>>> from lakeport.streams.flow import step
>>> @step(input="raw-sensor-data", output="transformed-data")
... def process(payload):
...     payload["processed"] = True
...     return payload          # None drops the message; a list emits several

Run it with ``await run_step(process, url)`` or ``lakeport flow run module:process``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakeport.errors import Invalid
from lakeport.streams import dead_letters
from lakeport.streams.base import Consumer, EndOfTopic, Engine, Producer
from lakeport.streams.registry import open_engine
from lakeport.streams.types import Message, TopicOptions, validate_topic_name

# How long one wait for input lasts before the stop event is checked again.
_POLL_SECONDS = 0.2


@dataclass
class StepStats:
    """Counters of a running step, readable while it runs."""

    received: int = 0
    produced: int = 0
    dropped: int = 0
    skipped: int = 0  # inputs whose outputs were stored before a restart
    dead_letters: int = 0  # inputs that could not be decoded
    batches: int = 0
    last_input_seqno: int = 0
    last_output_seqno: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since the step started."""
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Input messages per second since the step started."""
        elapsed = self.elapsed
        return self.received / elapsed if elapsed > 0 else 0.0


@dataclass
class Step:
    """One processing step: ``input`` topic → ``transform`` → ``output`` topic.

    ``transform`` takes a payload (or the :class:`Message` when ``messages=True``) and
    returns the output payload, ``None`` to drop it, or a list to emit several; it may be
    ``async``. With ``batch=True`` it takes the list of a batch's inputs and returns one
    result per input, in order (each a payload, ``None`` or a list).
    ``name`` (default: the function's name) names the step's consumer and producer.
    An input whose payload cannot be decoded is sent to ``dead_letter`` (default
    ``dead-letter.step.<name>``) with the reason and its bytes, and acked.
    """

    transform: Callable[[Any], Any]
    input: str
    output: str
    name: str = ""
    batch: bool = False
    batch_size: int = 1000
    messages: bool = False
    output_options: TopicOptions | None = None
    dead_letter: str | None = None

    def __post_init__(self) -> None:
        self.name = self.name or getattr(self.transform, "__name__", "")
        for what, value in (("step name", self.name), ("input", self.input),
                            ("output", self.output), ("dead_letter", self.dead_letter)):
            if value is None:
                continue
            try:
                validate_topic_name(value)
            except Invalid as exc:
                raise Invalid(f"{what} of step {self.name!r}: {exc}") from None
        if self.input == self.output:
            raise Invalid(f"step {self.name!r} reads and writes the same topic {self.input!r}")
        if self.batch_size < 1:
            raise Invalid(f"step {self.name!r}: batch_size must be 1 or more")

    def __call__(self, value: Any) -> Any:
        """Call the transform directly (handy in unit tests of the function)."""
        return self.transform(value)

    def msg_id(self, seqno: int, index: int) -> str:
        """The output ``msg_id`` of the ``index``-th result of input ``seqno``."""
        return f"{self.name}:{self.input}:{seqno}.{index}"


def step(
    input: str,
    output: str,
    *,
    name: str | None = None,
    batch: bool = False,
    batch_size: int = 1000,
    messages: bool = False,
    output_options: TopicOptions | None = None,
    dead_letter: str | None = None,
) -> Callable[[Callable[[Any], Any]], Step]:
    """Declare a function as a :class:`Step` from ``input`` to ``output``."""

    def declare(transform: Callable[[Any], Any]) -> Step:
        return Step(transform, input, output, name=name or "", batch=batch,
                    batch_size=batch_size, messages=messages, output_options=output_options,
                    dead_letter=dead_letter)

    return declare


async def _resolve(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


# Where the outputs stored before a restart end: (input seqno, result index).
_Written = tuple[int, int]


class _Outputs:
    """The outputs of one batch with their msg_ids, how many inputs were dropped or
    skipped, and the inputs that could not be decoded (with the reason)."""

    __slots__ = ("dead", "dropped", "msg_ids", "payloads", "skipped")

    def __init__(self) -> None:
        self.payloads: list[Any] = []
        self.msg_ids: list[str] = []
        self.dropped = 0
        self.skipped = 0
        self.dead: list[tuple[Message, str]] = []

    def add(self, step_: Step, seqno: int, result: Any, written: _Written | None) -> None:
        items = [] if result is None else result if isinstance(result, list) else [result]
        if not items:
            self.dropped += 1
        stored = written[1] if written is not None and written[0] == seqno else -1
        for index, item in enumerate(items):
            if index > stored:  # results up to ``stored`` were written before a restart
                self.payloads.append(item)
                self.msg_ids.append(step_.msg_id(seqno, index))


def _decoded(step_: Step, batch: Sequence[Message], outputs: _Outputs,
             written: _Written | None) -> tuple[list[Message], list[Any]]:
    """The messages to transform and the transform's inputs: inputs whose outputs are
    already stored are skipped, undecodable ones become dead letters."""
    messages, inputs = [], []
    for message in batch:
        if written is not None and message.seqno < written[0]:
            outputs.skipped += 1
            continue
        try:
            value = message.payload
        except ValueError as exc:  # not JSON, empty, not UTF-8 (raw bytes of another client)
            outputs.dead.append(
                (message, f"cannot decode the {message.format.value} payload: {exc}"))
            continue
        messages.append(message)
        inputs.append(message if step_.messages else value)
    return messages, inputs


async def _transform(step_: Step, batch: Sequence[Message],
                     written: _Written | None = None) -> _Outputs:
    """Apply the step to a batch (after ``written``, if given)."""
    outputs = _Outputs()
    batch, inputs = _decoded(step_, batch, outputs, written)
    if not batch:
        return outputs
    if step_.batch:
        results = await _resolve(step_.transform(inputs))
        if not isinstance(results, Sequence) or len(results) != len(batch):
            got = f"{len(results)} results" if isinstance(results, Sequence) else repr(results)
            raise Invalid(
                f"batch step {step_.name!r} must return a list with one result per input "
                f"({len(batch)}), got {got}"
            )
        for message, result in zip(batch, results, strict=True):
            outputs.add(step_, message.seqno, result, written)
    else:
        for message, value in zip(batch, inputs, strict=True):
            outputs.add(step_, message.seqno, await _resolve(step_.transform(value)), written)
    return outputs


class _DeadLetters:
    """The step's dead letter topic, opened at the first dead letter."""

    def __init__(self, engine: Engine, step_: Step) -> None:
        self.engine = engine
        self.step = step_
        self.producer: Producer | None = None

    def topic(self) -> str:
        if self.step.dead_letter:
            return self.step.dead_letter
        from lakeport.apps.messages import dead_letter_topic

        return dead_letter_topic(f"step.{self.step.name}")

    async def send(self, letters: list[tuple[Message, str]]) -> None:
        step_ = self.step
        if self.producer is None:
            producer = self.engine.producer(step_.name, self.topic(), on_no_exists="create",
                                            options=dead_letters.OPTIONS)
            await producer.open()
            self.producer = producer
        await dead_letters.send_dead_letters(self.producer, step_.input, letters,
                                             f"{step_.name}:{step_.input}:",
                                             {"step": step_.name})

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.close()


async def _process(step_: Step, consumer: Consumer, producer: Producer, stats: StepStats,
                   batch: list[Message], written: _Written | None = None,
                   dead: _DeadLetters | None = None) -> None:
    """Transform one batch, produce its outputs (and dead letters) durably, then ack the
    inputs. Inputs up to ``written`` had their outputs stored before a restart."""
    outputs = await _transform(step_, batch, written)
    if outputs.dead:
        if dead is None:
            raise Invalid(f"step {step_.name!r}: {outputs.dead[0][1]}")
        await dead.send(outputs.dead)
    if outputs.payloads:
        try:
            seqnos = await producer.produce_many(outputs.payloads, msg_ids=outputs.msg_ids)
        except Invalid as exc:
            raise Invalid(
                f"step {step_.name!r} (input {step_.input!r} seqnos "
                f"{batch[0].seqno}-{batch[-1].seqno}): {exc}"
            ) from exc
        stats.last_output_seqno = seqnos[-1]
    await consumer.ack(batch[-1].seqno)
    stats.received += len(batch)
    stats.produced += len(outputs.payloads)
    stats.dropped += outputs.dropped
    stats.skipped += outputs.skipped
    stats.dead_letters += len(outputs.dead)
    stats.batches += 1
    stats.last_input_seqno = batch[-1].seqno


async def run_step(
    step_: Step,
    url: str | None = None,
    stop: asyncio.Event | None = None,
    *,
    engine: Engine | None = None,
    stats: StepStats | None = None,
    follow: bool = True,
) -> StepStats:
    """Run ``step_`` until ``stop`` is set (or, with ``follow=False``, the input's end).

    The step reads its input under the consumer name ``step_.name`` from ``unread``, so a
    restarted step resumes after its last ack, skipping the inputs whose outputs are already
    stored (found by msg_id in the output topic, on engines that can). A stop lets the
    current batch finish and be acked. ``engine`` reuses an open engine instead of opening
    ``url``. Returns the counters.
    """
    stop = stop or asyncio.Event()
    stats = stats or StepStats()
    if engine is None:
        async with open_engine(url) as opened:
            return await run_step(step_, stop=stop, engine=opened, stats=stats, follow=follow)
    consumer = engine.consumer(step_.name, step_.input, mode="exclusive", position="unread",
                               follow=follow, on_no_exists="create")
    producer = engine.producer(step_.name, step_.output, on_no_exists="create",
                               options=step_.output_options)
    dead = _DeadLetters(engine, step_)
    async with consumer, producer:
        try:
            written = await _written_before(step_, engine, consumer)
            async for batch in batches(consumer, stop, max_n=step_.batch_size):
                await _process(step_, consumer, producer, stats, batch, written, dead)
                if written is not None and batch[-1].seqno >= written[0]:
                    written = None
        finally:
            await dead.close()
    return stats


async def _written_before(step_: Step, engine: Engine, consumer: Consumer) -> _Written | None:
    """The last output this step stored for an input it has not acked (a crash between
    produce and ack), found by its msg_id in the output topic; None if there is none or
    the engine cannot look (then the output topic's dedup window is the only guard)."""
    find = getattr(engine, "last_msg_id", None)
    if find is None:
        return None
    prefix = f"{step_.name}:{step_.input}:"
    msg_id = await find(step_.output, step_.name, prefix)
    if msg_id is None:
        return None
    seqno, _, index = msg_id[len(prefix):].partition(".")
    try:
        written = int(seqno), int(index)
    except ValueError:
        return None
    return written if written[0] > consumer.acked else None


async def batches(
    consumer: Consumer,
    stop: asyncio.Event | None = None,
    *,
    max_n: int = 1000,
    idle_timeout: float | None = None,
) -> AsyncIterator[list[Message]]:
    """Yield batches of up to ``max_n`` messages as they arrive.

    Ends when ``stop`` is set (checked at least every 0.2 s while waiting), when a consumer
    opened with ``follow=False`` reaches its end, or when nothing arrived for
    ``idle_timeout`` seconds.
    """
    idle_since = time.monotonic()
    while stop is None or not stop.is_set():
        wait = _POLL_SECONDS
        if idle_timeout is not None:
            left = idle_timeout - (time.monotonic() - idle_since)
            if left <= 0:
                return
            wait = min(wait, left)
        try:
            batch = await consumer.recv_batch(max_n, timeout=wait)
        except TimeoutError:
            continue
        except EndOfTopic:
            return
        yield batch
        idle_since = time.monotonic()


def load_step(target: str) -> Step:
    """Import ``module:attribute`` (the current directory is searched too) and return the step."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise Invalid(f"bad step {target!r}: use module:step, e.g. examples.demo_step:process")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise Invalid(f"cannot import {module_name!r} for step {target!r}: {exc}") from None
        raise
    found = getattr(module, attribute, None)
    if found is None:
        raise Invalid(f"module {module_name!r} has no {attribute!r} (step {target!r})")
    if not isinstance(found, Step):
        raise Invalid(
            f"{target!r} is a {type(found).__name__}, not a step: declare it with "
            "@step(input=..., output=...) from lakeport.streams.flow"
        )
    return found


__all__ = ["Step", "StepStats", "batches", "load_step", "run_step", "step"]
