"""ON24's per-account call limit, shared by every instance of the app through one Table row per account.

ON24 counts an account's attendee-list calls per minute, whoever makes them. The timer (PullMetrics) and the
on-demand pull (an HTTP function) run on different instances (Flex Consumption scales HTTP functions and each
other trigger separately), so a limiter in one process cannot see the other's calls. ``SharedRateLimiter``
reserves calls in blocks from a row in the sync-state table (PartitionKey ``~pace``, RowKey
``<client id>|attendee``) that lists the blocks granted recently; the write is etag-guarded, so two instances
never both take the last free calls. A block is used within ``hold`` seconds of its grant or dropped, and is
counted for ``hold`` + the window, so that every window ON24 may count holds at most the limit, whichever
instance made the calls.

Cost: one read and one write per block (a tenth of the limit, at least 10 calls), nothing per call.

The same limiter paces registrant writes (``kind`` ``registrant``: creates, updates, soft deletes) and forgets
(``forget``), each in its own row per account (issue 22). RegisterAttendee calls ``acquire_within``: under the
limit it returns at once; a wait longer than the delivery's budget reserves nothing and raises ``PaceLater``
with the slot, so that the delivery parks the message until then instead of holding a worker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from azure.data.tables import TableClient

from shared.ratelimit import RateLimiter
from shared.store.tables import read_entity, write_entity

_log = logging.getLogger(__name__)

PACE_PARTITION = "~pace"
DEFAULT_HOLD_SECONDS = 5.0
Grant = tuple[float, int]  # (wall-clock time of the grant, calls granted)


def block_size(calls: int) -> int:
    """Calls reserved at once: a tenth of the limit, at least 10 (never more than the limit)."""
    return min(calls, max(10, calls // 10))


class PaceLater(Exception):
    """The account's next free call lies ``seconds`` ahead, past the caller's budget: nothing was reserved."""

    def __init__(self, account: str, kind: str, seconds: float) -> None:
        super().__init__(f"ON24's {kind} call limit of account {account} is reached; next slot in {seconds:.1f}s")
        self.account = account
        self.kind = kind
        self.seconds = seconds


def plan_grant(
    grants: Sequence[Grant], now: float, *, calls: int, window: float, hold: float, want: int
) -> tuple[tuple[Grant, ...], int, float]:
    """Decide a reservation from the recent grants (pure).

    A grant made at ``t`` covers calls made from ``t`` to ``t + hold``; any window of ``window`` seconds that
    contains one of them starts after ``t - window``, so the grant counts against new ones until
    ``t + hold + window``.

    Returns:
        (the grants still counted, plus the new one if any; calls granted now; seconds to wait when none).
    """
    live = tuple((t, n) for t, n in grants if t + hold + window > now and n > 0)
    free = calls - sum(n for _, n in live)
    if free > 0:
        granted = min(want, free)
        return (*live, (now, granted)), granted, 0.0
    oldest = min(t for t, _ in live)
    return live, 0, max(0.0, oldest + hold + window - now)


class SharedRateLimiter(RateLimiter):
    """At most ``calls`` calls per ``per_seconds`` for one ON24 account, across every instance.

    Threads of one process share the limiter's current block. ``clock`` is wall-clock time (instances compare
    grant times); ``monotonic`` bounds how long a block is used; both and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        table: TableClient,
        account: str,
        calls: int,
        per_seconds: float = 60.0,
        *,
        hold: float = DEFAULT_HOLD_SECONDS,
        kind: str = "attendee",
        block: int | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(calls, per_seconds, clock=monotonic, sleep=sleep)
        self._table = table
        self._key = (PACE_PARTITION, f"{account}|{kind}")
        self._account, self._kind = account, kind
        self._hold = hold
        self._wall = clock
        self._monotonic = monotonic
        self._pause = sleep
        self._block = block_size(calls) if block is None else max(1, min(calls, block))
        self._left = 0
        self._usable_until = 0.0
        self._mutex = threading.Lock()

    def acquire(self) -> float:
        """Block until this instance may make one more call, and count it.

        Returns:
            Seconds this call waited.

        Raises:
            StoreError: Table Storage could not be reached (the caller's call is not made).
        """
        waited = 0.0
        with self._mutex:
            while True:
                if self._left > 0 and self._monotonic() < self._usable_until:
                    self._left -= 1
                    return waited
                wait = self._reserve()
                if wait > 0:
                    _log.debug("shared ON24 limit reached for %s: waiting %.2fs", self._key[1], wait)
                    self._pause(wait)
                    waited += wait

    def acquire_within(self, budget: float) -> float:
        """``acquire``, unless the wait would pass ``budget`` seconds: then nothing is reserved.

        Returns:
            Seconds this call waited (0.0 under the limit).

        Raises:
            PaceLater: the slot lies beyond the budget (its ``seconds`` say when, from now).
            StoreError: as ``acquire``.
        """
        started = self._monotonic()
        with self._mutex:
            queued, waited = self._monotonic() - started, 0.0  # queued behind this process's other callers
            while True:
                if self._left > 0 and self._monotonic() < self._usable_until:
                    self._left -= 1
                    return queued + waited
                wait = self._reserve()
                if wait > 0:
                    if queued + waited + wait > budget:
                        raise PaceLater(self._account, self._kind, wait)
                    before = self._monotonic()
                    self._pause(wait)
                    if self._monotonic() <= before:  # a clock that stands still (a test's): waiting brings no slot
                        raise PaceLater(self._account, self._kind, wait)
                    waited += wait

    def _reserve(self) -> float:
        """Take a block of calls from the shared row; the seconds to wait when none is free."""
        partition, row = self._key
        what = f"reserving ON24 calls for account {row.split('|')[0]}"
        while True:
            entity = read_entity(self._table, partition, row, what)
            now = self._wall()
            grants, granted, wait = plan_grant(
                _grants(entity), now, calls=self.calls, window=self.per_seconds, hold=self._hold, want=self._block
            )
            if not granted:
                return wait
            started = self._monotonic()
            body = {"PartitionKey": partition, "RowKey": row, "Grants": json.dumps([[t, n] for t, n in grants])}
            etag = entity.metadata.get("etag") if entity is not None else None
            if write_entity(self._table, body, etag, what) is not None:
                self._left, self._usable_until = granted, started + self._hold
                return 0.0
            # another instance reserved first: read again


def account_pacer(
    table: TableClient,
    account: str,
    kind: str,
    calls: int,
    window: float,
    virtual: Callable[[], datetime] | None,
    sleep: Callable[[float], None] | None = None,
) -> SharedRateLimiter:
    """An account's registrant or forget pacing: blocks of a fiftieth of the limit, held a thirtieth of the window.

    ``virtual``: a test's clock, read for the grant times and the waits (None: the system's clocks). ``sleep``: how
    a wait passes (None: ``time.sleep``; on a virtual clock no real time, so a clock that stands still ends the
    wait in a park instead of a real sleep under a frozen clock).
    """
    wall = (lambda: virtual().timestamp()) if virtual is not None else time.time
    monotonic = wall if virtual is not None else time.monotonic
    if sleep is None:
        sleep = time.sleep if virtual is None else (lambda _seconds: None)
    block, hold = max(1, calls // 50), window / 30
    return SharedRateLimiter(
        table, account, calls, window, hold=hold, kind=kind, block=block, clock=wall, monotonic=monotonic, sleep=sleep
    )


def _grants(entity: Any) -> list[Grant]:
    if entity is None:
        return []
    try:
        items = json.loads(entity.get("Grants") or "[]")
        return [(float(t), int(n)) for t, n in items]
    except (ValueError, TypeError):
        _log.warning("the shared ON24 pacing row %s is unreadable; starting it again", entity.get("RowKey"))
        return []
