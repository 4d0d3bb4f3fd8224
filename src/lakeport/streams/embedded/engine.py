"""``file:///path`` — the embedded durable engine: a segment log per topic on local disk.

Several processes on one machine may produce and consume at once: writers serialize on
a file lock and group-commit (one ``fdatasync`` for everything pending), readers follow
the ``head`` file. Layout under the engine root::

    topics/<name>/topic.json            create options
    topics/<name>/<seqno>.log, head     the log (for ``ram`` topics: under /dev/shm)
    topics/<name>/consumers/            acks, locks and shared-consumer claims
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import orjson
import pyarrow as pa
from pydantic import ValidationError

from lakeport.allocator import collector_paused, keep_freed_memory
from lakeport.errors import Conflict, Invalid, NotFound
from lakeport.streams.base import Consumer, ConsumerSpec, Engine, Producer
from lakeport.streams.block import MessageBlock, block_payloads
from lakeport.streams.embedded import log
from lakeport.streams.embedded.reader import LogReader
from lakeport.streams.embedded.state import ConsumerDir
from lakeport.streams.embedded.writer import TopicWriter
from lakeport.streams.types import (
    Format,
    OnNoExists,
    Persistence,
    TopicInfo,
    TopicOptions,
    encode_payload,
    encode_payloads,
    require_one_copy,
    validate_topic_name,
)

logger = logging.getLogger("lakeport.streams.embedded")


def _root_from_url(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise Invalid(f"bad file URL {url!r}: use file:///absolute/path")
    path = unquote(parts.path)
    if not path:
        raise Invalid(f"bad file URL {url!r}: use file:///absolute/path")
    return Path(path)


class EmbeddedEngine(Engine):
    """Topics as segment logs in a folder; durable, multi-process, no server."""

    scheme = "file"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.root = _root_from_url(url)
        self.topics_dir = self.root / "topics"
        self._writers: dict[str, TopicWriter] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    async def connect(self) -> None:
        keep_freed_memory()
        try:
            self.topics_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Invalid(f"cannot use {self.url}: {exc}") from exc

    async def close(self) -> None:
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            await writer.close()

    # -- folders -----------------------------------------------------------------------
    def topic_dir(self, name: str) -> Path:
        return self.topics_dir / validate_topic_name(name)

    def data_dir(self, name: str, options: TopicOptions) -> Path:
        if options.persistence is Persistence.RAM:
            shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
            key = hashlib.sha1(str(self.topic_dir(name).resolve()).encode()).hexdigest()[:20]
            return shm / f"lakeport-{os.getuid()}" / key
        return self.topic_dir(name)

    def read_options(self, name: str) -> TopicOptions:
        try:
            raw = (self.topic_dir(name) / "topic.json").read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"topic {name!r} does not exist") from None
        try:
            return TopicOptions.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'topic.json'}: {e['msg']}" for e in exc.errors()
            )
            raise Invalid(f"topic {name!r} has a broken topic.json: {problems}") from None
        except Invalid as exc:  # a number out of range (written by an older version)
            raise Invalid(f"topic {name!r} has a broken topic.json: {exc}") from None

    # -- topics ------------------------------------------------------------------------
    async def create_topic(
        self, name: str, options: TopicOptions | None = None, *, exist_ok: bool = False
    ) -> TopicInfo:
        options = options or TopicOptions()
        require_one_copy(options, "embedded")
        final = self.topic_dir(name)
        if final.exists():
            if exist_ok:
                return await self.topic_info(name)
            raise Conflict(f"topic {name!r} already exists")
        staging = self.topics_dir / f".new-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        (staging / "consumers").mkdir()
        (staging / "topic.json").write_bytes(options.model_dump_json().encode())
        data_dir = self.data_dir(name, options)
        if options.persistence is Persistence.RAM:
            shutil.rmtree(data_dir, ignore_errors=True)
            data_dir.mkdir(parents=True)
            self._init_log(data_dir)
        else:
            self._init_log(staging)
        try:
            staging.rename(final)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if exist_ok and final.exists():
                return await self.topic_info(name)
            raise Conflict(f"topic {name!r} already exists") from None
        return await self.topic_info(name)

    @staticmethod
    def _init_log(data_dir: Path) -> None:
        log.segment_path(data_dir, 1).touch()
        fd = os.open(data_dir / "head", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            log.write_head(fd, 0, 1, 0, 0)
        finally:
            os.close(fd)

    async def delete_topic(self, name: str) -> None:
        options = self.read_options(name)
        writer = self._writers.pop(name, None)
        if writer is not None:
            await writer.close()
        trash = self.topics_dir / f".deleted-{uuid.uuid4().hex}"
        try:
            self.topic_dir(name).rename(trash)
        except FileNotFoundError:
            raise NotFound(f"topic {name!r} does not exist") from None
        if options.persistence is Persistence.RAM:
            shutil.rmtree(self.data_dir(name, options), ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)
        self.notify(name)

    async def topic_info(self, name: str) -> TopicInfo:
        options = self.read_options(name)
        data_dir = self.data_dir(name, options)
        try:
            reader = LogReader(data_dir, options.format)
        except FileNotFoundError:
            raise NotFound(f"topic {name!r} has no data (was it deleted?)") from None
        try:
            last, _, _, newest = reader.head()
            segments = log.list_segments(data_dir)
            first = segments[0] if segments else last + 1
            size, oldest = 0, None
            for base in segments:
                path = log.segment_path(data_dir, base)
                try:
                    size += path.stat().st_size
                except FileNotFoundError:
                    continue
                if oldest is None:
                    oldest = _first_batch_time(path)
        finally:
            reader.close()
        entries = max(0, last - first + 1)
        consumers = ConsumerDir(self.topic_dir(name) / "consumers").infos(last)
        return TopicInfo(
            name=name,
            options=options,
            first_seqno=first,
            last_seqno=last,
            entries=entries,
            bytes=size,
            oldest_ns=oldest if entries else None,
            newest_ns=newest if entries else None,
            consumers=consumers,
        )

    async def list_topics(self) -> list[TopicInfo]:
        names = sorted(
            p.name for p in self.topics_dir.iterdir() if not p.name.startswith(".") and p.is_dir()
        )
        infos = []
        for name in names:
            try:
                infos.append(await self.topic_info(name))
            except NotFound:
                continue
            except (Invalid, OSError) as exc:
                # one unreadable topic must not hide all the others
                logger.warning("topics of %s: skipped topic %r: %s", self.url, name, exc)
        return infos

    # -- producers and consumers -------------------------------------------------------
    async def writer(self, name: str, options: TopicOptions) -> TopicWriter:
        writer = self._writers.get(name)
        if writer is None or writer.closed:
            writer = TopicWriter(
                self.data_dir(name, options), options,
                durable=options.persistence is Persistence.DISK,
            )
            await writer.open()
            writer.listeners.append(lambda: self.notify(name))
            self._writers[name] = writer
        return writer

    def notify(self, name: str) -> None:
        for waiter in self._waiters.pop(name, []):
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for_data(self, name: str, timeout: float) -> None:
        """Sleep until a local commit to ``name`` or ``timeout`` (other processes are polled)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass

    async def last_msg_id(self, topic: str, producer: str | None, prefix: str,
                          limit: int = 1_000_000) -> str | None:
        """The newest msg_id starting with ``prefix`` that the producer named ``producer``
        (None: any) stored in ``topic``, among its last ``limit`` messages (None if none
        there). It holds whatever the dedup window: chained steps and forwarders use it to
        resume exactly once."""
        data_dir = self.data_dir(topic, self.read_options(topic))

        def find() -> str | None:
            try:
                fd = os.open(data_dir / "head", os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                head = log.read_head(fd)
            finally:
                os.close(fd)
            if head is None:
                return None
            return log.last_msg_id(data_dir, head, producer, prefix, limit)

        return await asyncio.to_thread(find)

    def _make_producer(self, name: str, topic: str, on_no_exists: OnNoExists,
                       options: TopicOptions | None) -> Producer:
        return EmbeddedProducer(self, name, topic, on_no_exists, options)

    def _make_consumer(self, spec: ConsumerSpec) -> Consumer:
        from lakeport.streams.embedded.consumer import EmbeddedConsumer

        return EmbeddedConsumer(self, spec)


def _first_batch_time(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        for _, header in log.iter_headers(fd):
            return header.time_ns
        return None
    finally:
        os.close(fd)


class EmbeddedProducer(Producer):
    engine: EmbeddedEngine

    async def _open_producer(self) -> None:
        options = self.engine.read_options(self.topic)
        self._writer = await self.engine.writer(self.topic, options)
        self._name_bytes = self.name.encode()

    def produce(self, payload: Any, *, headers: dict[str, str] | None = None,
                key: str | None = None, msg_id: str | None = None) -> Awaitable[int]:
        if not self._open:
            self._check_open()
        if type(payload) is dict and self.format is Format.JSON:
            try:
                data = orjson.dumps(payload)  # the common case without a detour
            except TypeError:
                data = encode_payload(payload, self.format)  # raises a clear Invalid
        else:
            data = encode_payload(payload, self.format)
        extra = None
        if headers or key is not None:
            extra = {"h": dict(headers) if headers else None, "k": key}
        return self._writer.add_one(self._name_bytes, data, extra, msg_id)

    async def produce_many(self, payloads: Sequence[Any], *,
                           msg_ids: Sequence[str] | None = None) -> list[int]:
        self._check_open()
        data = encode_payloads(payloads, self.format)
        if not data:
            return []
        if msg_ids is None:
            base = await self._writer.add_many(self._name_bytes, data, None)
            return list(range(base, base + len(data)))
        if len(msg_ids) != len(data):
            raise Invalid("produce_many: msg_ids must have one id per payload")
        known = [self._writer.known_seqno(m) for m in msg_ids]
        fresh = [i for i, k in enumerate(known) if k is None]
        seqnos: list[Any] = list(known)
        if fresh:
            base = await self._writer.add_many(
                self._name_bytes, [data[i] for i in fresh], [msg_ids[i] for i in fresh]
            )
            for offset, index in enumerate(fresh):
                seqnos[index] = base + offset
        return [s if isinstance(s, int) else await s for s in seqnos]

    async def produce_block(self, block: MessageBlock, *,
                            msg_ids: Sequence[str] | None = None) -> list[int]:
        self._check_open()
        with collector_paused():  # tens of thousands of small objects, no cycles
            firsts, fresh, known = self._queue_block(block, msg_ids)
        stored: list[int] = []
        for first, count in firsts:
            base = await first
            stored.extend(range(base, base + count))
        if len(stored) == len(known):
            return stored
        for index, seqno in zip(fresh, stored, strict=True):
            known[index] = seqno
        return [s if isinstance(s, int) else await s for s in known]

    def _queue_block(self, block: MessageBlock, msg_ids: Sequence[str] | None
                     ) -> tuple[list[tuple[Awaitable[int], int]], list[int], list[Any]]:
        """Queue the block's new messages, one batch per run of one time and producer (all
        in the next commit): (first-seqno future, count) per batch, the indexes of the new
        messages, and the known seqno (or pending future) of each message, None if new."""
        data = block_payloads(block, self.format, msg_ids)
        table = block.table
        writer = self._writer
        known: list[Any] = [None] * len(data)
        if msg_ids is not None and writer.any_known(msg_ids):
            known = [writer.known_seqno(m) for m in msg_ids]
        fresh = [i for i, seen in enumerate(known) if seen is None]
        if len(fresh) < len(data):
            data = [data[i] for i in fresh]
            table = table.take(pa.array(fresh, pa.int64()))
            msg_ids = None if msg_ids is None else [msg_ids[i] for i in fresh]
        extras = _extras(table, msg_ids)
        stamps = table.column(1).to_numpy()
        encoded = table.column(2).combine_chunks().dictionary_encode()
        names = encoded.dictionary.to_pylist()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        cuts = np.flatnonzero((stamps[1:] != stamps[:-1]) | (codes[1:] != codes[:-1]))
        bounds = [0, *(cuts + 1).tolist(), len(data)]
        firsts = [(writer.add_many(names[codes[a]].encode(), data[a:b], None,
                                   extras=None if extras is None else extras[a:b],
                                   time_ns=int(stamps[a])), b - a)
                  for a, b in itertools.pairwise(bounds) if b > a]
        return firsts, fresh, known


def _extras(table: Any, msg_ids: Sequence[str] | None) -> list[dict | None] | None:
    """Each message's extras as the log stores them (None: no message has any)."""
    n = table.num_rows
    headers_col, keys_col = table.column(4), table.column(5)
    if headers_col.null_count == n and keys_col.null_count == n:
        return None if msg_ids is None else [{"i": m} for m in msg_ids]
    # a site's header text repeats: parse each distinct text once
    encoded = headers_col.combine_chunks().dictionary_encode(null_encoding="encode")
    parsed = np.array([None, *(None if text is None else orjson.loads(text)
                               for text in encoded.dictionary.to_pylist())], dtype=object)
    headers = parsed[encoded.indices.to_numpy(zero_copy_only=False) + 1].tolist()
    if keys_col.null_count == n:
        if msg_ids is None:
            return [None if h is None else {"h": h} for h in headers]
        return [{"i": m} if h is None else {"h": h, "i": m}
                for h, m in zip(headers, msg_ids, strict=True)]
    ids: Sequence[str | None] = msg_ids if msg_ids is not None else [None] * n
    return [_extra(h, k, m) for h, k, m in zip(headers, keys_col.to_pylist(), ids, strict=True)]


def _extra(headers: dict | None, key: str | None, msg_id: str | None) -> dict[str, Any] | None:
    """One message's extras as the log stores them."""
    if headers is None and key is None:
        return None if msg_id is None else {"i": msg_id}
    extra: dict[str, Any] = {}
    if headers is not None:
        extra["h"] = headers
    if key is not None:
        extra["k"] = key
    if msg_id is not None:
        extra["i"] = msg_id
    return extra
