"""The claim table of shared consumers: claim, ack, release, stale claims, JSON round trip."""

from __future__ import annotations

import time
from collections import Counter

import orjson
from hypothesis import given
from hypothesis import strategies as st

from lakeport.streams.shared import SharedGroup

MEMBERS = ("a", "b", "c")
LAST = 20


def test_members_claim_disjoint_ranges_in_order() -> None:
    group = SharedGroup()
    assert group.claim("a", 3, last_seqno=10) == [1, 2, 3]
    assert group.claim("b", 3, last_seqno=10) == [4, 5, 6]
    assert group.claim("a", 10, last_seqno=10) == [7, 8, 9, 10]
    assert group.claim("b", 5, last_seqno=10) == []
    assert sorted(group.members()) == ["a", "b"]


def test_claims_start_at_the_first_kept_seqno() -> None:
    group = SharedGroup()
    assert group.claim("a", 2, last_seqno=20, first_seqno=15) == [15, 16]


def test_acked_is_the_low_watermark() -> None:
    group = SharedGroup()
    group.claim("a", 3, last_seqno=6)
    group.claim("b", 3, last_seqno=6)
    group.ack("b", 6)
    assert group.acked == 0  # 1..3 still held by a
    group.ack("a", 2)
    assert group.acked == 2
    group.ack("a", 3)
    assert group.acked == 6
    assert group.claim("a", 5, last_seqno=6) == []


def test_ack_only_covers_the_members_own_claims() -> None:
    group = SharedGroup()
    group.claim("a", 2, last_seqno=4)
    group.claim("b", 2, last_seqno=4)
    group.ack("a", 4)  # a never held 3 and 4
    assert group.acked == 2
    assert group.claims["b"] == [3, 4]


def test_released_claims_are_handed_out_again_first() -> None:
    group = SharedGroup()
    group.claim("a", 4, last_seqno=10)
    group.ack("a", 1)
    group.release("a")
    assert "a" not in group.members()
    assert group.claim("b", 2, last_seqno=10) == [2, 3]
    assert group.claim("b", 3, last_seqno=10) == [4, 5, 6]
    group.ack("b", 6)
    assert group.acked == 6


def test_released_claims_behind_retention_are_dropped() -> None:
    group = SharedGroup()
    group.claim("a", 4, last_seqno=10)
    group.release("a")
    assert group.claim("b", 10, last_seqno=10, first_seqno=3) == [3, 4, 5, 6, 7, 8, 9, 10]


def test_stale_claims_go_to_other_members() -> None:
    group = SharedGroup()
    group.claim("stalled", 2, last_seqno=3)
    assert group.claim("b", 5, last_seqno=3, stale_after=60) == [3]
    group.since["stalled"] = time.time() - 61
    assert group.claim("b", 5, last_seqno=3, stale_after=60) == [1, 2]
    assert "stalled" not in group.members()
    assert group.claims["b"] == [1, 2, 3]


def test_acking_keeps_a_members_claims_fresh() -> None:
    group = SharedGroup()
    group.claim("a", 3, last_seqno=3)
    group.since["a"] = time.time() - 100
    group.ack("a", 1)
    assert group.release_stale(50) == []
    assert group.release_stale(50, now=time.time() + 60) == ["a"]
    assert group.claim("b", 5, last_seqno=3) == [2, 3]


def test_json_round_trip_keeps_every_claim() -> None:
    group = SharedGroup(acked=4)
    group.claim("a", 3, last_seqno=20)
    group.claim("b", 3, last_seqno=20)
    group.ack("b", 8)
    group.release("a")
    group.claim("c", 1, last_seqno=20)
    restored = SharedGroup.from_json(orjson.loads(orjson.dumps(group.to_json())))
    assert restored.to_json() == group.to_json()
    assert restored.acked == group.acked == 4
    assert restored.claim("d", 10, last_seqno=20) == group.claim("d", 10, last_seqno=20)


def test_from_json_accepts_a_minimal_record() -> None:
    group = SharedGroup.from_json({"acked": 7})
    assert group.claim("a", 2, last_seqno=10) == [8, 9]


@given(st.lists(st.tuples(st.sampled_from(["claim", "ack", "release"]),
                          st.sampled_from(MEMBERS), st.integers(0, LAST)), max_size=80))
def test_members_never_hold_one_seqno_together_and_each_is_done_once(
        steps: list[tuple[str, str, int]]) -> None:
    """Whatever members claim, ack and release, no seqno is handed to a member while another
    holds it or after it was done, ``acked`` is the low watermark, and once everything is
    acked every seqno was done by exactly one member."""
    group = SharedGroup()
    held: dict[str, set[int]] = {member: set() for member in (*MEMBERS, "last")}
    done: Counter[int] = Counter()

    def ack(member: str, upto: int) -> None:
        group.ack(member, upto)
        finished = {seqno for seqno in held[member] if seqno <= upto}
        held[member] -= finished
        done.update(finished)

    def claim(member: str, n: int) -> list[int]:
        taken = group.claim(member, n, last_seqno=LAST)
        others = set().union(*(seqnos for m, seqnos in held.items() if m != member))
        assert not set(taken) & others, f"{taken} handed to {member} while held: {held}"
        assert not set(taken) & set(done), f"{taken} handed to {member} after done"
        held[member].update(taken)
        return taken

    for step, member, n in steps:
        if step == "claim":
            claim(member, n)
        elif step == "ack":
            ack(member, n)
        else:
            group.release(member)
            held[member].clear()
        watermark = next(k for k in range(LAST + 1) if k + 1 not in done)
        assert group.acked == watermark
    for member in MEMBERS:
        ack(member, LAST)
    while claim("last", 5):
        ack("last", LAST)
    assert done == Counter(range(1, LAST + 1))
    assert group.acked == LAST
