"""What can interrupt a transfer short of failing it, each telling the download what to do next."""

from __future__ import annotations

import random


class Restart(Exception):
    """The server cannot continue this ``.part`` (Range ignored, or the file changed): start over."""

    def __init__(self, reason: str, *, range_ignored: bool) -> None:
        super().__init__(reason)
        self.range_ignored = range_ignored


class Transient(Exception):
    """A failure worth retrying: connection lost, 5xx, 429."""

    def __init__(self, reason: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status


class Expired(Exception):
    """The storage URL stopped working (401/403/410…): ask the source for a fresh one."""

    def __init__(self, status: int, reason: str, url: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.url = url


def backoff_delay(failures: int, exc: Transient) -> float:
    """Exponential backoff with full jitter; a server's ``Retry-After`` wins."""
    if exc.retry_after is not None:
        return exc.retry_after
    return random.uniform(0.5, 1.0) * min(30.0, 2.0**failures / 2)


class TooSlow(Transient):
    """A connection stayed under the minimum speed for the whole window: dropped and retried from where it
    stopped. Unlike other failures, the trickle it delivered does not count as progress that resets the
    retry count, so a download on which no connection ever reaches the minimum fails in the end."""
