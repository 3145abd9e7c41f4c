"""How fast and how many: bounded concurrency, rate limits, retry delays."""

from __future__ import annotations

import asyncio
import random
import time
from email.utils import parsedate_to_datetime
from typing import AsyncIterator, Awaitable, Callable, Iterable, Mapping, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# A server asking for more than this is treated as asking for this (a build is not left hanging).
MAX_RETRY_AFTER_S = 600.0


async def map_unordered(function: Callable[[Item], Awaitable[Result]], items: Iterable[Item],
                        workers: int) -> AsyncIterator[Result]:
    """``function`` applied to every item by ``workers`` coroutines; results in finishing order.

    Items are taken from ``items`` lazily, one per free worker, so a list of a million calls
    never becomes a million tasks. An exception in ``function`` stops the run and is raised.
    """
    source = iter(items)
    finished: asyncio.Queue = asyncio.Queue()

    async def work() -> None:
        for item in source:  # a shared iterator: each worker takes the next item
            finished.put_nowait(await function(item))

    tasks = [asyncio.create_task(work()) for _ in range(workers)]
    for task in tasks:
        task.add_done_callback(finished.put_nowait)  # a finished worker reports itself
    running = len(tasks)
    try:
        while running:
            result = await finished.get()
            if isinstance(result, asyncio.Task) and result in tasks:
                running -= 1
                if not result.cancelled() and result.exception() is not None:
                    raise result.exception()
                continue
            yield result
    finally:
        for task in tasks:
            task.cancel()


class RateLimiter:
    """At most ``per_minute`` units a minute (requests or tokens), spread evenly.

    A token bucket refilled at ``per_minute / 60`` a second that holds at most one second's
    worth (at least one unit), so a run never starts with a burst of a whole minute. A taker
    whose amount exceeds the bucket waits until it is full and leaves it in debt, so the rate
    holds on average whatever the sizes. Waiters are served in arrival order.
    """

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self._clock = clock
        self._updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` may be spent, then spend it."""
        async with self._lock:
            while (wait := self.wait_for(amount)) > 0:
                await asyncio.sleep(wait)
            self.level -= amount

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` may be spent (0 when it may be spent now)."""
        self._refill()
        missing = min(amount, self.capacity) - self.level
        return max(0.0, missing / self.rate)

    def refund(self, amount: float) -> None:
        """Give back ``amount`` (negative: charge more), e.g. once a call's real size is known."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asks us to wait: ``retry-after-ms``, or ``Retry-After`` in seconds or
    as an HTTP date; None when it gives none (or nothing readable)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def retry_delay(attempt: int, base_s: float, cap_s: float, retry_after: float | None = None,
                rng: random.Random | None = None) -> float:
    """How long to wait before attempt ``attempt + 1``.

    When the server said when to come back, that long (never earlier) plus a little jitter so
    the calls it turned away do not all return at once; otherwise exponential backoff with
    full jitter: uniform in [0, min(cap, base * 2^(attempt-1))].
    """
    rng = rng or random
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S) + rng.uniform(0, base_s)
    return rng.uniform(0, min(cap_s, base_s * 2 ** (attempt - 1)))
