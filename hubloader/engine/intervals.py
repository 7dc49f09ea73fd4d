"""Sorted, merged half-open byte ranges: which parts of a file are written, pending or missing."""

from __future__ import annotations

import bisect
from collections.abc import Iterator


class Intervals:
    """Sorted, merged half-open byte ranges ``[start, end)``."""

    def __init__(self, items: list[list[int]] | None = None) -> None:
        self._items: list[list[int]] = []
        for start, end in items or []:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        items = self._items
        i = bisect.bisect_left(items, [start, start])
        if i > 0 and items[i - 1][1] >= start:
            i -= 1
        j = i
        while j < len(items) and items[j][0] <= end:
            start, end = min(start, items[j][0]), max(end, items[j][1])
            j += 1
        items[i:j] = [[start, end]]

    def pop_from(self, start: int) -> int | None:
        """Remove the range beginning exactly at ``start``; return its end."""
        if self._items and self._items[0][0] == start:
            return self._items.pop(0)[1]
        return None

    def clip(self, size: int) -> None:
        self._items = [[s, min(e, size)] for s, e in self._items if s < size]

    def total(self) -> int:
        return sum(e - s for s, e in self._items)

    def covers(self, start: int, end: int) -> bool:
        return any(s <= start and end <= e for s, e in self._items)

    def gaps(self, size: int) -> list[tuple[int, int]]:
        found, pos = [], 0
        for start, end in self._items:
            if start > pos:
                found.append((pos, start))
            pos = max(pos, end)
        if pos < size:
            found.append((pos, size))
        return found

    def to_list(self) -> list[list[int]]:
        return [list(item) for item in self._items]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(s, e) for s, e in self._items])
