"""Frames waiting for the tracker, and the targets that wait for a frame. No ROS, thread-safe.

The worker takes the newest frame that it has not taken yet; older frames it skips are dropped (and
counted). Recent frames stay held in a small ring so that a TargetArray stamped with one of them can
start on exactly that frame: if it has not been processed yet the worker takes it next (then the
newer frames), otherwise the targets start on the next frame processed, as do zero-stamped and
unknown-stamped targets. Received = processed + dropped + waiting, at every moment.

A frame is held as it arrived (e.g. the image message): only the frame the worker takes is decoded,
so frames that will be dropped cost no decode. ``wants_frame`` says whether a new frame would be taken at
once (the worker waits and none is fresh): the node lets the executor take an image message only then, so
that under a flood the others wait, and are overwritten, in the subscription's queue instead of being
converted (``on_wait`` tells the node when the worker starts waiting). Targets for an id already waiting
replace it (the latest wins: one initialisation per id and frame).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from ..core.types import Target


@dataclass
class HeldFrame:
    seq: int  # arrival order (stamps need not be monotonic)
    stamp_ns: int
    header: Any  # the input's std_msgs/Header, published unchanged with the result
    pixels: Any  # what the worker decodes (the image message), or the pixels themselves
    shape: tuple[int, int]  # (H, W), known before decoding


@dataclass
class Job:
    frame: HeldFrame
    targets: list[Target] = field(default_factory=list)


class FrameBuffer:
    def __init__(self, ring_size: int, on_wait: Callable[[], None] = lambda: None):
        self._cond = threading.Condition()
        self._on_wait = on_wait
        self._worker_waiting = False
        self._ring: deque[HeldFrame] = deque()
        self._ring_size = ring_size
        self._taken = -1  # seq of the last frame handed to the worker
        self._for_frame: dict[int, list[Target]] = {}  # seq -> targets starting on that held frame
        self._for_next: list[Target] = []
        self.received = 0
        self.dropped = 0

    def push(self, stamp_ns: int, header: Any, pixels: Any, shape: tuple[int, int] | None = None) -> None:
        """Hold a frame; ``shape`` (H, W) may be left out when ``pixels`` is an array."""
        with self._cond:
            shape = tuple(shape or np.shape(pixels)[:2])
            self._ring.append(HeldFrame(self.received, stamp_ns, header, pixels, shape))
            self.received += 1
            if len(self._ring) > self._ring_size:
                old = self._ring.popleft()
                if old.seq > self._taken:  # never processed: its targets move on to the next frame
                    self.dropped += 1
                    self._for_next += self._for_frame.pop(old.seq, [])
            self._cond.notify()

    def shape_for(self, stamp_ns: int) -> tuple[int, int] | None:
        """Size (H, W) of the frame targets with this stamp will start on, where it is known now: their own
        held frame, or for a zero stamp the newest one. None for a stamp no held frame has (typically a frame
        still in transit, possibly at a new resolution): those targets are checked when they start."""
        with self._cond:
            frame = self._find(stamp_ns) if stamp_ns else (self._ring[-1] if self._ring else None)
            return frame.shape if frame else None

    def add_targets(self, stamp_ns: int, targets: list[Target]) -> str:
        """Queue targets, replacing waiting ones of the same ids; returns where they start (for the log)."""
        with self._cond:
            self._drop_waiting({t.obj_id for t in targets})
            frame = self._find(stamp_ns) if stamp_ns else None
            if frame is not None and frame.seq > self._taken:
                self._for_frame.setdefault(frame.seq, []).extend(targets)
                where = "their frame (held, not processed yet)"
            else:
                self._for_next.extend(targets)
                where = ("the next frame processed: " +
                         ("zero stamp" if not stamp_ns else
                          "their frame was already processed" if frame is not None else "no held frame has that stamp"))
            self._cond.notify()
            return where

    def requeue(self, targets: list[Target]) -> None:
        """Targets of a frame that could not be processed: they start on the next one, unless newer targets
        for their ids are already waiting."""
        with self._cond:
            waiting = {t.obj_id for t in self._waiting()}
            self._for_next = [t for t in targets if t.obj_id not in waiting] + self._for_next

    def discard_targets(self, obj_ids: Iterable[int]) -> set[int]:
        """Drop waiting targets with these ids; returns the ids that were waiting."""
        ids = set(obj_ids)
        with self._cond:
            found = {t.obj_id for t in self._waiting() if t.obj_id in ids}
            self._drop_waiting(ids)
            return found

    def waiting_ids(self) -> set[int]:
        with self._cond:
            return {t.obj_id for t in self._waiting()}

    def clear(self, frames: bool = True) -> None:
        """Forget waiting targets and, with ``frames``, the waiting frames (counted as dropped)."""
        with self._cond:
            self._for_next, self._for_frame = [], {}
            if frames:
                self.dropped += sum(f.seq > self._taken for f in self._ring)
                self._taken = self.received - 1

    def wants_frame(self) -> bool:
        """Whether a frame pushed now would be taken at once: the worker waits and no frame is fresh."""
        with self._cond:
            return self._worker_waiting and not self._fresh()

    def take(self, timeout: float) -> Job | None:
        """The next job: the oldest untaken frame that targets are waiting for, else the newest."""
        with self._cond:
            if not self._fresh():
                self._worker_waiting = True
                self._on_wait()
                arrived = self._cond.wait_for(self._fresh, timeout)
                self._worker_waiting = False
                if not arrived:
                    return None
            fresh = [f for f in self._ring if f.seq > self._taken]
            chosen = next((f for f in fresh if self._for_frame.get(f.seq)), fresh[-1])
            self.dropped += sum(f.seq < chosen.seq for f in fresh)
            self._taken = chosen.seq
            targets = self._for_frame.pop(chosen.seq, []) + self._for_next
            self._for_next = []
            return Job(chosen, targets)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _fresh(self) -> bool:
        return bool(self._ring) and self._ring[-1].seq > self._taken

    def _find(self, stamp_ns: int) -> HeldFrame | None:
        return next((f for f in reversed(self._ring) if f.stamp_ns == stamp_ns), None)

    def _drop_waiting(self, ids: set[int]) -> None:
        self._for_next = [t for t in self._for_next if t.obj_id not in ids]
        for seq, targets in self._for_frame.items():
            self._for_frame[seq] = [t for t in targets if t.obj_id not in ids]

    def _waiting(self) -> list[Target]:
        return self._for_next + [t for ts in self._for_frame.values() for t in ts]
