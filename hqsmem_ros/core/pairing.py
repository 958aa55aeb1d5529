"""Pairing by stamp: a colour frame takes the depth frame of the same stamp, else the nearest one within a
tolerance, from a small ring of the latest depth frames (message_filters is not on the pip route)."""

from __future__ import annotations

from collections import deque
from typing import Generic, Iterable, TypeVar

T = TypeVar("T")


def nearest_stamp(stamp_ns: int, stamps: Iterable[int], tolerance_s: float) -> int | None:
    """The stamp of ``stamps`` equal to ``stamp_ns``, else the nearest at most ``tolerance_s`` away (the earlier
    one on a tie), else None."""
    best = None
    for s in stamps:
        gap = abs(s - stamp_ns)
        if gap <= tolerance_s * 1e9 and (best is None or (gap, s) < (abs(best - stamp_ns), best)):
            best = s
    return best


class StampRing(Generic[T]):
    """The last ``size`` items by stamp (a newer item with a stamp already held replaces it)."""

    def __init__(self, size: int):
        self._items: deque[tuple[int, T]] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, stamp_ns: int, item: T) -> None:
        self._items = deque(((s, x) for s, x in self._items if s != stamp_ns), maxlen=self._items.maxlen)
        self._items.append((stamp_ns, item))

    def pair(self, stamp_ns: int, tolerance_s: float) -> T | None:
        """The item paired with a colour frame stamped ``stamp_ns``, or None."""
        best = nearest_stamp(stamp_ns, (s for s, _ in self._items), tolerance_s)
        return None if best is None else next(x for s, x in self._items if s == best)

    def clear(self) -> None:
        self._items.clear()
