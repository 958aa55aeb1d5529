"""Which frame size the tracker follows: a stray frame of another size must not wipe every object.

The first frame sets the size. A frame of another size is refused (the caller counts it as
``resolution_mismatch``) until that new size has come ``frames`` times in a row; then the new size is
accepted, and the caller restarts tracking on it. One frame of the tracked size in between restarts
the count: a second camera publishing on the same topic, or a single bad frame, never resets tracking.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    SAME = "same"          # the tracked size (or the first frame)
    MISMATCH = "mismatch"  # another size, not (yet) persistent: refuse the frame
    CHANGED = "changed"    # another size, persistent: it is the tracked size from now on


class ResolutionGate:
    def __init__(self, frames: int):
        self.frames = max(1, frames)
        self.size: tuple[int, int] | None = None
        self._candidate: tuple[int, int] | None = None
        self._count = 0

    def observe(self, size: tuple[int, int]) -> Verdict:
        size = tuple(size)
        if self.size is None or size == self.size:
            self.size, self._candidate, self._count = size, None, 0
            return Verdict.SAME
        if size != self._candidate:
            self._candidate, self._count = size, 0
        self._count += 1
        if self._count < self.frames:
            return Verdict.MISMATCH
        self.size, self._candidate, self._count = size, None, 0
        return Verdict.CHANGED

    def reset(self) -> None:
        """Forget the size (a new stream, e.g. after activation): the next frame sets it."""
        self.size, self._candidate, self._count = None, None, 0
