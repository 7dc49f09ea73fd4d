"""The per-service token bucket: shared, thread-safe and usable from several event loops at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hubloader.engine.ratelimit import MAX_RETRY_AFTER, RateLimiter, limiter_for, retry_after_seconds


def test_interval_like_the_seed_for_burst_one():
    limiter = RateLimiter(2.0)
    waits = [limiter._reserve() for _ in range(4)]
    assert waits[0] == 0.0
    assert waits[1:] == pytest.approx([0.5, 1.0, 1.5], abs=0.05)


def test_burst_lets_requests_through_then_spaces_them():
    limiter = RateLimiter(10.0, burst=3)
    waits = [limiter._reserve() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2], abs=0.02)


def slot_times(limiter: RateLimiter, out: list[float]) -> None:
    """Reserve one slot; record when it is granted (reservation time + the wait it was told)."""
    now = time.monotonic()
    out.append(now + limiter._reserve())


def assert_spaced(slots: list[float], interval: float) -> None:
    slots = sorted(slots)
    assert all(b - a >= interval * 0.9 for a, b in zip(slots, slots[1:], strict=False))


def test_threads_get_distinct_slots():
    limiter = RateLimiter(50.0)
    slots: list[float] = []
    threads = [threading.Thread(target=slot_times, args=(limiter, slots)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(slots) == 8
    assert_spaced(slots, 0.02)


def test_async_callers_on_two_loops_share_the_bucket():
    limiter = RateLimiter(50.0)
    slots: list[float] = []

    async def three() -> None:
        async def one() -> None:
            now = time.monotonic()
            slots.append(now + await limiter.acquire())

        await asyncio.gather(one(), one(), one())

    threads = [threading.Thread(target=asyncio.run, args=(three(),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(slots) == 6
    assert_spaced(slots, 0.02)


def test_limiter_for_is_one_per_service():
    assert limiter_for("civitai") is limiter_for("civitai")
    assert limiter_for("civitai") is not limiter_for("huggingface")
    assert limiter_for("civitai").requests_per_second == 1.0


def test_bad_rates_are_refused():
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(1.0, burst=0)


def test_retry_after_reads_seconds_and_http_dates():
    from email.utils import formatdate

    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("") is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: retry now
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 -0000") == 0.0  # naive date, read as UTC
    later = retry_after_seconds(formatdate(time.time() + 3600, usegmt=True))
    assert later is not None and 3500 < later <= 3600


@pytest.mark.parametrize("value", ["inf", "1e999", "Fri, 31 Dec 9999 23:59:59 GMT", "999999999999"])
def test_retry_after_is_capped(value: str):
    assert retry_after_seconds(value) == MAX_RETRY_AFTER


def test_retry_after_nan_and_negative_infinity():
    assert retry_after_seconds("nan") is None and retry_after_seconds("-inf") == 0.0
