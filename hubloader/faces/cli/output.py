"""What every command shares: exit codes, the one-line error, and tables or JSON lines on stdout.

Errors are one line on stderr (what failed, why, and the command-line advice from
:mod:`hubloader.faces.advice`) and an exit code per error class, documented in :data:`EXIT_CODES_HELP`.
Tokens never reach the output (messages are redacted once more).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from typing import Any

from hubloader.core.errors import (
    AuthRequired,
    Cancelled,
    DiskFull,
    HubloaderError,
    IntegrityError,
    InvalidReference,
    NetworkError,
    NotFound,
    RateLimited,
    UnsafeFile,
)
from hubloader.core.metadata import ModelMetadata
from hubloader.core.settings import civitai_token, hf_token, redact_text
from hubloader.faces.advice import CLI, explain

# --- exit codes ------------------------------------------------------------------------------------

EXIT_OK = 0
EXIT_ERROR = 1  # any other failure (e.g. downloads disabled by the creator, a fetch that failed)
EXIT_USAGE = 2  # bad arguments, malformed reference, bad setting
EXIT_NOT_FOUND = 3  # no such model / file / revision; a workflow model nobody can resolve
EXIT_AUTH = 4  # a token is needed or was refused; gated repo; early access
EXIT_INTEGRITY = 5  # bytes that do not match their hash, HTML instead of a model, an unsafe file
EXIT_NETWORK = 6  # unreachable endpoint, timeouts, rate limited
EXIT_DISK_FULL = 7
EXIT_INTERRUPTED = 130  # Ctrl-C; partial downloads are kept and resume on the next run


class UsageError(HubloaderError):
    hint = "See `hubloader <command> --help`."


class MissingDependency(HubloaderError):
    """An optional extra (gradio for ``ui``) is not installed."""


# Checked along the exception's MRO, so the most specific class wins (a gated repo is AuthRequired;
# "not found, or private" is NotFound first).
_EXIT_BY_CLASS: dict[type[BaseException], int] = {
    UsageError: EXIT_USAGE,
    InvalidReference: EXIT_USAGE,
    NotFound: EXIT_NOT_FOUND,
    AuthRequired: EXIT_AUTH,
    IntegrityError: EXIT_INTEGRITY,
    UnsafeFile: EXIT_INTEGRITY,
    RateLimited: EXIT_NETWORK,
    NetworkError: EXIT_NETWORK,
    DiskFull: EXIT_DISK_FULL,
    Cancelled: EXIT_INTERRUPTED,
}

EXIT_CODES_HELP = """\
exit codes (the same for every command):
  0    success (get: every file complete and verified; search: at least one hub answered)
  1    other error: a download that failed inside `resolve --download`; `rm`/`cache cleanup`
       not confirmed (nothing deleted)
  2    usage: bad arguments, malformed reference or setting
  3    not found: model, file, revision; a workflow/image model no source is known for
       (`resolve` and `lock` alike)
  4    authentication: token missing or refused (`login`, `whoami`), gated repository, early access
  5    integrity or safety: wrong hash, HTML instead of a model, unsafe/pickle file
  6    network: endpoint unreachable, timeout, rate limited (rerun to resume)
  7    disk full
  130  interrupted (Ctrl-C); partial downloads are kept and resume on rerun
"""


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an exception (see :data:`EXIT_CODES_HELP`)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        return EXIT_DISK_FULL
    for cls in type(exc).__mro__:
        if cls in _EXIT_BY_CLASS:
            return _EXIT_BY_CLASS[cls]
    return EXIT_ERROR


def one_line(exc: BaseException) -> str:
    """The error as the command line says it: the OS's words for OS errors, else message, hint and advice."""
    if isinstance(exc, OSError) and not isinstance(exc, HubloaderError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}."
    return " ".join(explain(exc, CLI).split())


class Output:
    """Where a command writes: tables or JSON lines on stdout, warnings and errors on stderr."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False, verbose: bool = False) -> None:
        self.json = json_mode
        self.quiet = quiet
        self.verbose = verbose

    def line(self, text: str = "") -> None:
        """Human output (suppressed by --quiet and --json)."""
        if not self.quiet and not self.json:
            print(text, flush=True)

    def result(self, text: str) -> None:
        """The result alone (a saved path, an id), one per line: what ``-q`` keeps, for ``P=$(hubloader … -q)``."""
        if not self.json:
            print(text, flush=True)

    def record(self, data: Any) -> None:
        """One JSON document on one line (for --json)."""
        print(json.dumps(data, default=str, ensure_ascii=False), flush=True)

    def warn(self, text: str) -> None:
        """A warning on stderr, once per run (the same words logged or warned before are not repeated)."""
        if not first_time(str(text)):
            return
        print(f"hubloader: warning: {_redact(text)}", file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        print(f"hubloader: error: {_redact(text)}", file=sys.stderr, flush=True)

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, widths: dict[int, int] | None = None
    ) -> None:
        if self.quiet or self.json:
            return
        print(format_table(headers, rows, widths=widths), flush=True)


_said: set[str] = set()
_said_lock = threading.Lock()


def forget_said() -> None:
    """A new run (``main`` called again in one process, as tests and hosts do): every message is new again."""
    with _said_lock:
        _said.clear()


def first_time(message: str) -> bool:
    """True the first time this run says ``message`` (warnings and log lines), False after."""
    key = " ".join(str(message).split()).removeprefix("hubloader: ")
    with _said_lock:
        if key in _said:
            return False
        _said.add(key)
        return True


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, widths: dict[int, int] | None = None) -> str:
    """Plain aligned columns; ``widths`` caps some columns (index → max characters, cut with …)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    for column, cap in (widths or {}).items():
        for row in cells[1:]:
            if len(row[column]) > cap:
                row[column] = row[column][: cap - 1] + "…"
    sizes = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(value + " " * (sizes[i] - _width(value)) for i, value in enumerate(row)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _width(text: str) -> int:
    """Columns a string takes in a terminal (CJK characters take two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("\n", " ")


def _redact(text: str) -> str:
    """Belt and braces: our messages carry no tokens, but nothing printed may ever show one."""
    return redact_text(str(text), hf_token(), civitai_token())


def short_hash(sha256: str) -> str:
    """The first 12 hex digits of a SHA256, or ``-``."""
    return sha256[:12] if sha256 else "-"


def rating(meta: ModelMetadata) -> str:
    """A model's rating, else its likes, else ``-``."""
    if meta.rating:
        return f"{meta.rating:.1f}"
    return f"{meta.like_count} likes" if meta.like_count else "-"


def model_fields(meta: ModelMetadata) -> dict[str, object]:
    """What every JSON line about a model says of it (``get``, ``list`` and ``info`` add their own fields)."""
    return {
        "name": meta.name,
        "id": meta.model_id,
        "source": meta.source.value,
        "type": meta.type.value,
        "base": meta.base_model.value,
        "size_bytes": meta.size_bytes,
        "sha256": meta.sha256,
    }
