"""A thread-safe sliding-window rate limiter for calls to a remote API.

ON24 limits each endpoint group per minute (100 calls/minute on attendee and registrant lists, see
``reference/on24-api.md`` §5). One ``RateLimiter`` shared by every thread of a worker keeps that process under
the limit; other processes have their own, so the limit given should leave headroom (throttling that still
happens is retried by the client as ``ThrottledError``).

The limiter hands out *slots*: call ``k`` may start no earlier than ``per_seconds`` after call ``k - calls``.
A caller reserves its slot under the lock and sleeps outside it, so waiting threads queue in arrival order
and never hold the lock while sleeping. ``clock`` and ``sleep`` are injectable for tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

_log = logging.getLogger(__name__)

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allow at most ``calls`` starts in any window of ``per_seconds`` seconds.

    Args:
        calls: calls allowed per window; at least 1.
        per_seconds: window length in seconds; greater than 0.
        clock: monotonic clock in seconds (injectable for tests).
        sleep: blocking sleep in seconds (injectable for tests).

    Raises:
        ValueError: ``calls`` or ``per_seconds`` is not positive.
    """

    def __init__(
        self,
        calls: int,
        per_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls < 1:
            raise ValueError("calls must be at least 1")
        if not per_seconds > 0:
            raise ValueError("per_seconds must be greater than 0")
        self._calls = calls
        self._per = float(per_seconds)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # Start times of the most recent ``calls`` reservations, ascending (future times for waiting callers).
        self._slots: deque[float] = deque(maxlen=calls)

    @property
    def calls(self) -> int:
        """Calls allowed per window."""
        return self._calls

    @property
    def per_seconds(self) -> float:
        """Window length in seconds."""
        return self._per

    def _reserve(self) -> float:
        """Reserve the next slot and return how long the caller must wait for it."""
        with self._lock:
            now = self._clock()
            slot = now
            if len(self._slots) == self._calls:
                slot = max(now, self._slots[0] + self._per)
            self._slots.append(slot)  # maxlen drops the oldest
            return slot - now

    def acquire(self) -> float:
        """Block until one more call is allowed, and count it.

        Returns:
            Seconds this call waited (0.0 when a call was allowed at once).
        """
        wait = self._reserve()
        if wait > 0:
            _log.debug("rate limit reached (%d per %.0fs): waiting %.2fs", self._calls, self._per, wait)
            self._sleep(wait)
        return wait

    def __repr__(self) -> str:
        return f"RateLimiter(calls={self._calls}, per_seconds={self._per})"
