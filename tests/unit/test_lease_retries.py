"""The lease bucket's create when an entry ages out between the client's two requests."""

from __future__ import annotations

import nats.js.errors
import pytest

from lakeport.streams.jetstream.lease import RetryingKV


class AgingBucket:
    """A bucket whose entry for the key expires while the client's create looks it up: the
    first create answers "key not found" (what nats-py raises then), the next one succeeds."""

    def __init__(self, misses: int) -> None:
        self.misses = misses
        self.creates = 0

    async def create(self, key: str, value: bytes) -> int:
        self.creates += 1
        if self.creates <= self.misses:
            raise nats.js.errors.KeyNotFoundError
        return 7


async def test_a_create_that_finds_the_entry_aged_out_creates_again() -> None:
    bucket = AgingBucket(misses=1)
    assert await RetryingKV(bucket, retry_for=1).create("k", b"v") == 7  # type: ignore[arg-type]
    assert bucket.creates == 2


async def test_a_key_that_never_settles_is_a_wrong_last_sequence() -> None:
    bucket = AgingBucket(misses=10_000)
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await RetryingKV(bucket, retry_for=1).create("k", b"v")  # type: ignore[arg-type]
