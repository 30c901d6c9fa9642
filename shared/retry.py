"""Back off and retry transient faults inside a time budget, then give up and let the platform retry.

Service Bus redelivers a message whose handler raised, and the timer runs again in a few minutes, so
in-process retries only smooth over short blips: they are bounded by a budget in seconds, not by
patience. A service's own ``Retry-After`` wins over our backoff; beyond the budget we raise at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.errors import ThrottledError, TransientError

_T = TypeVar("_T")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry transient faults.

    Attributes:
        budget: seconds from the first attempt after which no further sleep is started.
        base_delay: first backoff step in seconds; doubles per attempt, with full jitter.
        max_delay: cap of one backoff step (a longer ``Retry-After`` is still honoured within budget).
        max_attempts: attempts in all, the first included.
    """

    budget: float = 20.0
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_attempts: int = 6

    def delay(self, attempt: int, error: TransientError) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        if isinstance(error, ThrottledError) and error.retry_after is not None:
            return max(0.0, error.retry_after)
        step = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(step / 2, step)


NO_RETRY = RetryPolicy(budget=0.0, max_attempts=1)


def call_with_retry(
    operation: Callable[[], _T],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> _T:
    """Run ``operation``, retrying ``TransientError`` (throttling included) within ``policy``.

    Args:
        operation: the call to make; it raises ``TransientError`` for faults worth retrying.
        policy: the budget and backoff.
        what: a short description for the log line, e.g. ``"ON24 POST registrant (event 123)"``.
        sleep: injectable for tests.
        clock: injectable for tests.

    Returns:
        Whatever ``operation`` returns.

    Raises:
        TransientError: the last fault, once attempts or the budget ran out.
    """
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except TransientError as error:
            wait = policy.delay(attempt, error)
            spent = clock() - started
            if attempt >= policy.max_attempts or spent + wait > policy.budget:
                raise
            _log.warning(
                "retrying %s in %.2fs after attempt %d: %s",
                what,
                wait,
                attempt,
                error,
                extra={"retry_attempt": attempt, "retry_wait_s": round(wait, 3)},
            )
            sleep(wait)
