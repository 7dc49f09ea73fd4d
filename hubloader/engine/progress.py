"""Progress events of a download, the reporter that paces them, and the command line's tqdm bar."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("hubloader.engine.download")

PROGRESS_INTERVAL_S = 0.2
STATES = ("waiting", "starting", "downloading", "retrying", "verifying", "done", "reused", "cancelled", "failed")


@dataclass
class DownloadProgress:
    """One progress event. ``state`` is one of: waiting (another caller holds the file), starting,
    downloading, retrying, verifying, done, reused, cancelled, failed."""

    path: Path
    url: str  # redacted
    state: str
    bytes_done: int = 0
    total: int | None = None
    speed: float = 0.0  # bytes/s over the last seconds
    eta_s: float | None = None
    connections: int = 0
    resumed_from: int = 0
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return self.bytes_done / self.total if self.total else None


class TqdmProgress:
    """A progress callback drawing a tqdm bar (the CLI's); closes itself on a final state."""

    def __init__(self, desc: str | None = None, **tqdm_kwargs: Any) -> None:
        self.desc = desc
        self.tqdm_kwargs = tqdm_kwargs
        self.bar: Any = None

    def __call__(self, event: DownloadProgress) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=event.total,
                initial=event.bytes_done,
                desc=self.desc or event.path.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                **self.tqdm_kwargs,
            )
        if event.total is not None and self.bar.total != event.total:
            self.bar.total = event.total
        self.bar.update(event.bytes_done - self.bar.n)
        if event.state not in ("downloading", "starting"):
            self.bar.set_postfix_str(event.state, refresh=False)
        if event.state in ("done", "reused", "cancelled", "failed"):
            self.bar.close()


def tqdm_progress(desc: str | None = None, **tqdm_kwargs: Any) -> TqdmProgress:
    return TqdmProgress(desc, **tqdm_kwargs)


class ProgressReporter:
    """Turns a download's counters into :class:`DownloadProgress` events: speed over the last seconds,
    at most one event per ``PROGRESS_INTERVAL_S`` unless forced (state changes)."""

    def __init__(self, callback: Callable[[DownloadProgress], None] | None, path: Path, shown_url: str) -> None:
        self.callback = callback
        self.path = path
        self.shown_url = shown_url
        self.samples: deque[tuple[float, int]] = deque()
        self.last_emit = 0.0

    def emit(
        self,
        state: str,
        *,
        bytes_done: int,
        total: int | None,
        connections: int,
        resumed_from: int,
        force: bool = False,
        message: str = "",
    ) -> None:
        now = time.monotonic()
        self.samples.append((now, bytes_done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 3.0:
            self.samples.popleft()
        if self.callback is None or (not force and now - self.last_emit < PROGRESS_INTERVAL_S):
            return
        self.last_emit = now
        first_time, first_bytes = self.samples[0]
        speed = (bytes_done - first_bytes) / (now - first_time) if now > first_time else 0.0
        eta = (total - bytes_done) / speed if total is not None and speed > 0 else None
        event = DownloadProgress(
            path=self.path,
            url=self.shown_url,
            state=state,
            bytes_done=bytes_done,
            total=total,
            speed=speed,
            eta_s=eta,
            connections=connections,
            resumed_from=resumed_from,
            message=message,
        )
        try:
            self.callback(event)
        except Exception:  # a broken progress display must not break the download
            logger.exception("progress callback failed")
