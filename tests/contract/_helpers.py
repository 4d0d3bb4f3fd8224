"""Small helpers shared by the contract tests."""

from __future__ import annotations

from lakeport.streams import Consumer, EndMarker, Message

WAIT = 15.0  # seconds to wait for something that must arrive (generous for busy machines)
QUIET = 0.3  # seconds of silence that show nothing (more) is delivered


async def take(consumer: Consumer, n: int, timeout: float = WAIT) -> list[Message]:
    """Receive exactly ``n`` messages, each within ``timeout`` seconds."""
    received = []
    for _ in range(n):
        message = await consumer.recv(timeout=timeout)
        assert not isinstance(message, EndMarker), f"end marker after {len(received)} messages"
        received.append(message)
    return received


async def drain(consumer: Consumer, quiet: float = QUIET) -> list[Message]:
    """Receive until nothing arrives within ``quiet`` seconds."""
    received = []
    while True:
        try:
            received.extend(await consumer.recv_batch(1000, timeout=quiet))
        except TimeoutError:
            return received


def seqnos(messages: list[Message]) -> list[int]:
    return [message.seqno for message in messages]
