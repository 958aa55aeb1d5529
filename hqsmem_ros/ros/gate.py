"""A callback group that lets the executor take an image message only when the worker would take it.

While the worker tracks a frame, the image subscription stays out of the executor's wait set: new
frames wait in the subscription's queue (keep last 1 by default: only the newest is kept), where DDS
overwrites them for free. Taking and converting each one instead costs the executor ~1.5 ms of GIL per
640x480 frame, which under a max-rate flood starved the worker (README, "Floods"). When the worker
comes back for a frame, ``FrameBuffer`` calls ``on_wait`` and the node wakes the executor, which then
rebuilds its wait set with the subscription in it.
"""

from __future__ import annotations

from typing import Callable

from rclpy.callback_groups import CallbackGroup


class FrameGate(CallbackGroup):
    def __init__(self, wants_frame: Callable[[], bool]):
        super().__init__()
        self._wants_frame = wants_frame

    def can_execute(self, entity) -> bool:
        return self._wants_frame()

    def beginning_execution(self, entity) -> bool:
        return self._wants_frame()

    def ending_execution(self, entity) -> None:
        pass
