"""How sizes read: one formatter for every message, table and page.

Decimal units (1 GB = 10⁹ bytes), as huggingface_hub, CivitAI's pages and the hubs' own file lists show
them, so a size we print matches the size the user sees on the model page.
"""

from __future__ import annotations


def human_size(n: float | None, *, unknown: str = "-") -> str:
    """``1500000`` → ``"1.5 MB"``; ``0`` → ``"0 B"``; ``None`` (a size nobody told us) → ``unknown``."""
    if n is None:
        return unknown
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
