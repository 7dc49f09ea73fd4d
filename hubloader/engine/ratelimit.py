"""Request rate limiting: one token bucket per service, shared by every caller in the process.

The bucket is guarded by a plain ``threading.Lock`` held only while a slot is reserved (never while
sleeping), so the same limiter serves threads (``wait_if_needed``) and any number of event loops
(``await acquire()``) at once: each caller reserves the next free slot, then sleeps outside the lock.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from datetime import timezone
from email.utils import parsedate_to_datetime

#: Default request rates per service (requests per second, burst). CivitAI documents no quota but
#: throttles bursts behind Cloudflare, so it gets the seed's polite 1 request/s with a small burst.
DEFAULT_RATES: dict[str, tuple[float, int]] = {
    "civitai": (1.0, 4),
    "huggingface": (10.0, 20),
    "url": (20.0, 20),
}


class RateLimiter:
    """Token bucket: at most ``burst`` requests at once, refilled at ``requests_per_second``.

    ``RateLimiter(0.5)`` lets the first request through at once and each following one 2 s later,
    like the seed's interval limiter; ``burst > 1`` allows that many back-to-back requests after a pause.
    """

    def __init__(self, requests_per_second: float, burst: int = 1) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.requests_per_second = float(requests_per_second)
        self.burst = int(burst)
        self.min_interval = 1.0 / self.requests_per_second
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._updated = time.monotonic()

    def _reserve(self) -> float:
        """Take one token (possibly borrowed from the future); return how long the caller must wait."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.requests_per_second)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens * self.min_interval

    def wait_if_needed(self) -> float:
        """Block the calling thread until a request may be sent; returns the seconds waited."""
        delay = self._reserve()
        if delay > 0:
            time.sleep(delay)
        return delay

    async def acquire(self) -> float:
        """Async twin of :meth:`wait_if_needed`: sleeps without blocking the event loop."""
        delay = self._reserve()
        if delay > 0:
            await asyncio.sleep(delay)
        return delay

    def __repr__(self) -> str:
        return f"RateLimiter(requests_per_second={self.requests_per_second}, burst={self.burst})"


_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(service: str) -> RateLimiter:
    """The process-wide limiter of ``service`` ("civitai", "huggingface", "url"; others get the "url" rate)."""
    with _limiters_lock:
        limiter = _limiters.get(service)
        if limiter is None:
            rate, burst = DEFAULT_RATES.get(service, DEFAULT_RATES["url"])
            limiter = _limiters[service] = RateLimiter(rate, burst)
        return limiter


#: Longest wait a ``Retry-After`` may ask for; a longer one (``inf``, a date years away) is read as this.
MAX_RETRY_AFTER = 3600.0
#: Longest ``Retry-After`` a transfer sleeps through; beyond it the caller is told to come back later.
MAX_RETRY_WAIT = 300.0


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header as seconds to wait, within 0..:data:`MAX_RETRY_AFTER`: a number, or an HTTP
    date (RFC 9110); None when absent or unreadable (``NaN`` included)."""
    if not value:
        return None
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value)
    if seconds is None or math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _seconds_until(value: str) -> float | None:
    """Seconds from now to the HTTP date ``value``; None when it is not one."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are always UTC
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp() - time.time()
