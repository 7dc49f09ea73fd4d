"""Download progress on the command line: tqdm bars on a terminal, a plain line per file elsewhere.

On a terminal (stderr is one) each file gets a tqdm bar and multi-file work an overall bar below them; all
bars are closed before the result table is printed, so they never interleave with it. Elsewhere (CI logs,
Docker, a pipe) carriage-return bars would be noise: each file gets one line when it is complete (none when it
fails: the error line says it). A file that stops (Ctrl-C, an error) is never painted "failed": the one error line says what happened.
Everything goes to stderr, so ``P=$(hubloader get … -q)`` captures only the result.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from hubloader.core.units import human_size

#: The engine's progress callback, fed :class:`hubloader.engine.progress.DownloadProgress` events.
Callback = Callable[[Any], None]

_FINAL = ("done", "reused", "cancelled", "failed")


def on_terminal() -> bool:
    """Whether progress can be drawn: stderr is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


class Progress:
    """The progress of one command's downloads: :meth:`file` gives each file's callback; :meth:`close` ends all.

    ``files`` > 1 adds an overall bar (terminal) or an ``[i/n]`` prefix (plain lines). ``total_bytes`` sizes
    the overall bar when known."""

    def __init__(self, files: int = 1, total_bytes: int = 0, *, terminal: bool | None = None) -> None:
        self.terminal = on_terminal() if terminal is None else terminal
        self.files = files
        self.lock = threading.Lock()
        self.started = 0
        self.bars: list[Any] = []
        self.overall: Any = None
        self.done_bytes: dict[int, int] = {}
        if self.terminal and files > 1:
            from tqdm import tqdm

            self.overall = tqdm(
                total=total_bytes or None,
                desc=f"{files} files",
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                position=0,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def file(self, name: str) -> Callback:
        """The callback of one file's download, shown as ``name``."""
        with self.lock:
            self.started += 1
            index = self.started
        if self.terminal:
            return self._bar(name, index)
        return self._lines(name, index)

    def _bar(self, name: str, index: int) -> Callback:
        state: dict[str, Any] = {"bar": None}

        def update(event: Any) -> None:
            with self.lock:
                bar = state["bar"]
                if bar is None:
                    from tqdm import tqdm

                    bar = state["bar"] = tqdm(
                        total=event.total,
                        initial=event.bytes_done,
                        desc=name,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        position=index if self.overall is not None else None,
                        leave=self.overall is None,
                        dynamic_ncols=True,
                        file=sys.stderr,
                    )
                    self.bars.append(bar)
                if event.total is not None and bar.total != event.total:
                    bar.total = event.total
                bar.update(max(0, event.bytes_done - bar.n))
                self._overall(index, event.bytes_done)
                if event.state in ("verifying", "retrying", "reused", "done"):
                    bar.set_postfix_str(event.state, refresh=True)
                if event.state in _FINAL:
                    bar.close()

        return update

    def _overall(self, index: int, done: int) -> None:
        if self.overall is None:
            return
        self.done_bytes[index] = done
        self.overall.update(max(0, sum(self.done_bytes.values()) - self.overall.n))

    def _lines(self, name: str, index: int) -> Callback:
        prefix = f"[{index}/{self.files}] " if self.files > 1 else ""
        said: list[bool] = []

        def update(event: Any) -> None:
            if event.state in ("done", "reused") and not said:
                said.append(True)
                verb = "already present" if event.state == "reused" else "downloaded"
                size = human_size(event.bytes_done or event.total or None)
                _say(f"{prefix}{verb} {_label(name, event)} ({size})")

        return update

    def close(self) -> None:
        """Close every bar (before the result is printed)."""
        with self.lock:
            for bar in self.bars:
                bar.close()
            if self.overall is not None:
                self.overall.close()
                self.overall = None


def _label(name: str, event: Any) -> str:
    """The file's name: the one given, unless that is a reference (``civitai:1``, ``owner/repo``) and the
    engine's path names the file."""
    looks_like_file = ":" not in name and "/" not in name and "." in name
    return name if looks_like_file or not event.path.suffix else event.path.name


def _say(text: str) -> None:
    print(f"hubloader: {text}", file=sys.stderr, flush=True)
