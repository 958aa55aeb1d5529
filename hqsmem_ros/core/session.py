"""TrackingSession: the tracker's behaviour across frames, shared by the node, the offline runner, the soak
and the benchmarks, so that each of them does the same with the same input.

Per frame (``step``): the targets given with it merge per id (the latest wins) and are checked for the
frame's size with a reason each (``box``, ``mask``, ``max_objects``); a frame of a new size that the
resolution policy accepted restarts tracking on it (the outcome names the dropped objects); and after
``tracker.fault_limit`` consecutive faults the tracker resets and the objects restart from their last
good masks on the next frame. One ``FrameResult`` per stepped frame, also on a fault.

3D: a frame stepped with its aligned depth (``depth=(metres, intrinsics)``, ``core.depth``) gets each present
object's ``position`` (``object_3d`` with the session's ``DepthConfig``) and the 3D step's time in its timings
(``depth_3d``); a frame without depth, or one the tracker faulted on, gets none (``Outcome.has_3d``).

Resolution policy (``core.resolution.ResolutionGate``): a frame of another size is refused
(``resolution_mismatch``) until that size comes ``tracker.resolution_change_frames`` times in a row.
``admit`` applies it to a frame's size alone, so a live caller can refuse a frame before decoding it.

Thread-safe: ``admit`` and ``check_targets`` answer at once (a caller's input thread), while ``step``,
``remove``, ``reset`` and ``configure`` wait for the frame in progress.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .depth import DepthConfig, Intrinsics, object_3d
from .resolution import ResolutionGate, Verdict
from .targets import Rejection, check_targets, latest_per_id, within_capacity
from .tracker import HQSMemConfig, HQSMemTracker
from .types import FrameResult, Target


@dataclass
class Outcome:
    """What ``step`` did with one frame."""

    result: FrameResult
    rejected: list[Rejection] = field(default_factory=list)  # targets given with the frame that did not start
    resized: tuple[tuple[int, int], tuple[int, int]] | None = None  # (old, new) (H, W): tracking restarted
    dropped: list[int] = field(default_factory=list)  # objects the resize dropped
    restarting: list[int] | None = None  # a fault reset: the objects that restart on the next frame
    has_3d: bool = False  # the present objects' positions were computed from the frame's depth


class TrackingSession:
    def __init__(self, tracker: HQSMemTracker, depth: DepthConfig = DepthConfig()):
        self.tracker = tracker
        self.depth_config = depth
        self._lock = threading.Lock()  # the tracker: one frame, removal or reset at a time
        self._gate_lock = threading.Lock()
        self._gate = ResolutionGate(tracker.config.tracker.resolution_change_frames)
        self._shape: tuple[int, int] | None = None  # of the last stepped frame
        self._last_good: dict[int, Target] = {}  # id -> its mask on the last frame without a fault
        self._restart: list[Target] = []  # after a fault reset: start on the next frame
        self._known: frozenset[int] = frozenset()  # tracked or restarting; read without the lock

    @property
    def object_ids(self) -> frozenset[int]:
        """Ids tracked or restarting after a fault reset (as of the last frame, removal or reset)."""
        return self._known

    @property
    def size(self) -> tuple[int, int] | None:
        """The frame size (H, W) tracked now, None before the first frame."""
        return self._gate.size

    @property
    def resolution_change_frames(self) -> int:
        return self._gate.frames

    # -- answers at once ---------------------------------------------------------------------------
    def admit(self, shape: tuple[int, int]) -> bool:
        """The resolution policy on a frame of ``shape`` (H, W): True when it is a new size accepted now
        (the frame will restart tracking), False for the tracked size; raises ``resolution_mismatch``."""
        with self._gate_lock:
            tracked = self._gate.size
            verdict = self._gate.observe(tuple(shape))
        if verdict is Verdict.MISMATCH:
            raise Rejection("resolution_mismatch", (
                f"image is {shape[1]}x{shape[0]} while tracking {tracked[1]}x{tracked[0]}: refused until the new "
                f"size comes {self._gate.frames} times in a row (resolution_change_frames)"))
        return verdict is Verdict.CHANGED

    def check_targets(self, targets: Iterable[Target], shape: tuple[int, int] | None,
                      waiting: Iterable[int] = ()) -> tuple[list[Target], list[Rejection]]:
        """What can be answered about ``targets`` before their frame: the checks for ``shape`` (None: the
        ones that need no size) and room under max_objects beside the tracked and ``waiting`` ids."""
        ok, refused = check_targets(latest_per_id(targets), shape)
        fits, full = within_capacity(ok, set(self._known) | set(waiting), self.tracker.config.tracker.max_objects)
        return fits, refused + full

    # -- the frame loop ----------------------------------------------------------------------------
    def step(self, pixels: np.ndarray, targets: Iterable[Target] = (),
             depth: tuple[np.ndarray, Intrinsics] | None = None) -> Outcome:
        """Track ``pixels`` (RGB uint8) and start ``targets`` on it. The frame's size must be the tracked one
        or one ``admit`` has just accepted; any other raises ``resolution_mismatch`` (nothing changes).
        ``depth``: the frame's aligned depth (float32 metres, NaN holes: ``depth_metres``; the frame's size)
        and the camera's intrinsics, for each present object's 3D position."""
        shape = tuple(pixels.shape[:2])
        if depth is not None and depth[0].shape != shape:
            raise ValueError(f"depth is {depth[0].shape[1]}x{depth[0].shape[0]}, the frame {shape[1]}x{shape[0]}")
        with self._gate_lock:
            if self._gate.size is None:
                self._gate.observe(shape)
            tracked = self._gate.size
        if shape != tracked:
            raise Rejection("resolution_mismatch", f"image is {shape[1]}x{shape[0]} while tracking "
                                                   f"{tracked[1]}x{tracked[0]}")
        with self._lock:
            return self._step(pixels, shape, list(targets), depth)

    def process(self, pixels: np.ndarray, targets: Iterable[Target] = (),
                depth: tuple[np.ndarray, Intrinsics] | None = None) -> Outcome:
        """``admit`` then ``step``: for callers that hold the decoded frame already (offline, benchmarks)."""
        self.admit(pixels.shape[:2])
        return self.step(pixels, targets, depth)

    def _step(self, pixels: np.ndarray, shape: tuple[int, int], targets: list[Target],
              depth: tuple[np.ndarray, Intrinsics] | None) -> Outcome:
        tracker, cfg = self.tracker, self.tracker.config.tracker
        resized, dropped = None, []
        if self._shape is not None and shape != self._shape:  # a new size the policy accepted
            resized, dropped = (self._shape, shape), sorted(self._known)
            self._clear()
        self._shape = shape
        ok, rejected = check_targets(latest_per_id(self._restart + targets), shape)
        self._restart = []
        starting, full = within_capacity(ok, set(tracker.object_ids), cfg.max_objects)
        result = tracker.process(pixels, starting)
        outcome = Outcome(result, rejected + full, resized, dropped)
        if result.ok and depth is not None:
            self._positions(result, *depth)
            outcome.has_3d = True
        if result.ok:
            self._last_good = {o.obj_id: Target(o.obj_id, o.label, mask=o.mask) for o in result.objects if o.present}
        elif tracker.consecutive_faults >= cfg.fault_limit:
            restart = list(self._last_good.values())
            self._clear()
            self._restart = restart
            outcome.restarting = [t.obj_id for t in restart]
        self._update_known()
        return outcome

    def _positions(self, result: FrameResult, metres: np.ndarray, intrinsics: Intrinsics) -> None:
        start = time.perf_counter()
        for obj in result.objects:
            if obj.present:
                obj.position = object_3d(metres, obj.mask, intrinsics, self.depth_config)
        result.timings["depth_3d"] = time.perf_counter() - start

    # -- objects -----------------------------------------------------------------------------------
    def remove(self, obj_ids: Iterable[int]) -> list[int]:
        """Stop tracking ``obj_ids`` (also ones restarting after a fault reset); returns those it had."""
        ids = list(dict.fromkeys(obj_ids))
        with self._lock:
            had = [i for i in ids if i in self._known]
            gone = set(had)
            self.tracker.remove([i for i in self.tracker.object_ids if i in gone])
            self._restart = [t for t in self._restart if t.obj_id not in gone]
            for i in had:
                self._last_good.pop(i, None)
            self._update_known()
        return had

    def reset(self) -> int:
        """Forget every object and the tracked size (a new stream may come at another); returns how many
        objects were dropped."""
        with self._lock:
            dropped = len(self._known)
            self._clear()
            self._shape = None
            with self._gate_lock:
                self._gate.reset()
        return dropped

    def configure(self, config: HQSMemConfig) -> None:
        """New run-time parameter values (e.g. from ``ros2 param set``)."""
        with self._lock:
            self.tracker.configure(config)

    def _clear(self) -> None:
        self.tracker.reset()
        self._last_good, self._restart = {}, []
        self._update_known()

    def _update_known(self) -> None:
        self._known = frozenset(self.tracker.object_ids) | {t.obj_id for t in self._restart}
