"""ON24's per-account limit shared between instances (``shared.store.pacing``) against Azurite.

Two ``SharedRateLimiter`` objects stand for two instances (the timer's and the on-demand pull's); time is virtual
(a shared fake clock that ``sleep`` advances), so a minute costs nothing and the counts are exact.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from sandbox.azurite import Azurite
from shared.store.pacing import SharedRateLimiter, block_size, plan_grant


class VirtualTime:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def table(azurite: Azurite) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    name = "pace" + uuid.uuid4().hex[:12]
    client = service.create_table(name)
    yield client
    service.delete_table(name)


def limiter(table: Any, time: VirtualTime, calls: int = 100) -> SharedRateLimiter:
    return SharedRateLimiter(table, "1001", calls, 60.0, clock=time.clock, monotonic=time.clock, sleep=time.sleep)


def most_in_any_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


# ---- pure ----------------------------------------------------------------------------------------------------------
def test_plan_grant_counts_a_block_for_its_hold_plus_the_window() -> None:
    grants, granted, wait = plan_grant([], 100.0, calls=20, window=60, hold=5, want=10)
    assert granted == 10 and wait == 0 and grants == ((100.0, 10),)
    grants, granted, _ = plan_grant(grants, 101.0, calls=20, window=60, hold=5, want=10)
    assert granted == 10
    _, granted, wait = plan_grant(grants, 164.9, calls=20, window=60, hold=5, want=10)
    assert granted == 0 and wait == pytest.approx(0.1), "the first block counts until 100 + 5 + 60"
    kept, granted, _ = plan_grant(grants, 165.0, calls=20, window=60, hold=5, want=10)
    assert granted == 10 and kept == ((101.0, 10), (165.0, 10)), "expired blocks are dropped from the row"
    _, granted, _ = plan_grant([(100.0, 15)], 101.0, calls=20, window=60, hold=5, want=10)
    assert granted == 5, "what is left of the limit"


def test_block_size_is_a_tenth_of_the_limit_at_least_ten() -> None:
    assert [block_size(n) for n in (5, 30, 100, 1000, 100_000)] == [5, 10, 10, 100, 10_000]


# ---- two instances ------------------------------------------------------------------------------------------------
def test_two_instances_together_stay_within_the_limit(table: TableClient) -> None:
    time = VirtualTime()
    timer, on_demand = limiter(table, time), limiter(table, time)
    started = time.now
    calls: list[float] = []
    for i in range(300):
        (timer if i % 3 else on_demand).acquire()
        calls.append(time.now)
    assert most_in_any_window(calls, 60.0) <= 100
    assert time.now - started < 4 * 65, "and they keep going at the limit's pace"


def test_an_instance_alone_gets_the_whole_limit(table: TableClient) -> None:
    time = VirtualTime()
    alone = limiter(table, time)
    for _ in range(100):
        assert alone.acquire() == 0.0
    assert time.slept == []
    assert alone.acquire() > 0, "the 101st call of the minute waits"


def test_a_block_not_used_within_its_hold_is_dropped(table: TableClient) -> None:
    time = VirtualTime()
    one = limiter(table, time)
    one.acquire()
    time.now += 6  # the rest of the block is stale: calls made now would not be where the grant counted them
    one.acquire()
    grants = json.loads(table.get_entity("~pace", "1001|attendee")["Grants"])
    assert [n for _, n in grants] == [10, 10], "a second block was reserved"


class RacingTable:
    """The Table client of one instance: its first read waits until the other instance has written."""

    def __init__(self, inner: TableClient, read_done: threading.Event, other_wrote: threading.Event) -> None:
        self.inner, self.read_done, self.other_wrote = inner, read_done, other_wrote
        self.first = True

    def get_entity(self, *args: Any, **kwargs: Any) -> Any:
        entity = self.inner.get_entity(*args, **kwargs)
        if self.first:
            self.first = False
            self.read_done.set()
            assert self.other_wrote.wait(10)
        return entity

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SignallingTable:
    def __init__(self, inner: TableClient, wrote: threading.Event) -> None:
        self.inner, self.wrote = inner, wrote

    def update_entity(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.inner.update_entity(*args, **kwargs)
        finally:
            self.wrote.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_two_instances_racing_for_the_last_calls_never_both_get_them(table: TableClient) -> None:
    time = VirtualTime()
    setup = limiter(table, time, calls=20)
    for _ in range(10):
        setup.acquire()  # ten calls of the minute are taken: ten are left
    a_read, b_wrote = threading.Event(), threading.Event()
    a = limiter(RacingTable(table, a_read, b_wrote), time, calls=20)
    b = limiter(SignallingTable(table, b_wrote), time, calls=20)

    thread = threading.Thread(target=a.acquire)
    thread.start()
    assert a_read.wait(10), "A has read the row with ten calls free"
    b.acquire()  # B takes the last ten while A holds its stale read
    thread.join(10)

    assert not thread.is_alive()
    assert time.slept and time.slept[0] > 0, "A's write lost the race, it read again and had to wait"
    grants = json.loads(table.get_entity("~pace", "1001|attendee")["Grants"])
    assert grants == [[time.now, 10]], "A's block was granted only once the first blocks stopped counting"
