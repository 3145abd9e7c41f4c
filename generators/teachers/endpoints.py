"""Several endpoints serving one model: route to the least busy, rest the failing ones."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

log = logging.getLogger("synthrank.teachers")


@dataclass
class Endpoint:
    """One base URL and what we know of it during a run."""

    base_url: str
    in_flight: int = 0
    failures_in_row: int = 0
    resting_until: float = 0.0
    answered: int = 0
    failed: int = 0

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


class EndpointPool:
    """Picks the endpoint with the fewest requests in flight among those not resting.

    An endpoint that fails ``failures_to_rest`` times in a row (connection errors, timeouts,
    5xx, unreadable bodies; not 429, which means busy, not broken) rests for ``rest_s``
    seconds: it gets no requests while another endpoint can take them. When every endpoint
    rests, the one that wakes first is used, so a single endpoint is never left idle.
    """

    def __init__(self, base_urls: Sequence[str], failures_to_rest: int = 5, rest_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        if not base_urls:
            raise ValueError("an endpoint pool needs at least one base URL")
        self.endpoints = [Endpoint(url) for url in base_urls]
        self.failures_to_rest = failures_to_rest
        self.rest_s = rest_s
        self._clock = clock

    @property
    def in_flight(self) -> int:
        return sum(endpoint.in_flight for endpoint in self.endpoints)

    def pick(self) -> Endpoint:
        now = self._clock()
        awake = [e for e in self.endpoints if e.resting_until <= now]
        if not awake:
            return min(self.endpoints, key=lambda e: e.resting_until)
        return min(awake, key=lambda e: e.in_flight)

    def succeeded(self, endpoint: Endpoint) -> None:
        endpoint.answered += 1
        endpoint.failures_in_row = 0

    def failed(self, endpoint: Endpoint) -> None:
        endpoint.failed += 1
        endpoint.failures_in_row += 1
        now = self._clock()
        if endpoint.failures_in_row >= self.failures_to_rest and endpoint.resting_until <= now:
            endpoint.resting_until = now + self.rest_s
            if len(self.endpoints) > 1:
                log.warning("teacher endpoint %s failed %d times in a row; set aside for %.0f s",
                            endpoint.base_url, endpoint.failures_in_row, self.rest_s)
