"""HQSMemTracker: the per-frame loop of docs/method.md §2, the only place that sequences its steps.

    1. base VOS step (all objects)            -> backend.step
    2-3. box-prompted proposals, verified     -> refiner.refine (present objects only)
    4. teacher forcing                         -> backend.accept(accepted masks)
    5. smart memory update at the schedule     -> SmartMemory.decide -> backend.evict/write_memory
    6. absence                                 -> empty / tiny / unconfident masks are reported absent

One frame in, one ``FrameResult`` out, also when the backend fails on that frame. Not thread-safe:
``core.session.TrackingSession`` drives it, one call at a time, and checks the targets it is given.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .backends.base import Backend
from .box_init import grabcut_box_init
from .config import param
from .memory import MemoryConfig, MemoryDecision, SmartMemory
from .refine import RefinerConfig, VerifiedRefiner
from .types import Box, Frame, FrameResult, ObjectResult, Prediction, Target, mask_box

PredictionHook = Callable[[Frame, dict[int, Prediction]], dict[int, Prediction]]


@dataclass(frozen=True)
class TrackerConfig:
    min_area: int = param(16, "A base-model mask smaller than this many pixels reports the object absent "
                          "(and a refined mask smaller than this is not accepted)",
                          min=0, max=1_000_000, dynamic=True)
    presence_threshold: float = param(0.3, "A base-model confidence below this reports the object absent",
                                      min=0.0, max=1.0, dynamic=True)
    max_objects: int = param(32, "Most objects tracked at once; further targets are rejected", min=1, max=255)
    resolution_change_frames: int = param(5, "Consecutive frames of a new size before tracking restarts on it; "
                                          "until then such frames are rejected (resolution_mismatch)",
                                          min=1, max=10_000)
    fault_limit: int = param(10, "Consecutive tracker faults after which the tracker is reset and restarted "
                             "from the last good masks", min=1, max=100_000, dynamic=True)


@dataclass(frozen=True)
class HQSMemConfig:
    """Everything the core takes; backend-specific sections live with their backends (see factory)."""

    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)


@dataclass
class _Track:
    label: str
    present: bool = True


class HQSMemTracker:
    def __init__(self, backend: Backend, config: HQSMemConfig = HQSMemConfig(),
                 refiner: VerifiedRefiner | None = None,
                 box_to_mask: Callable[[Frame, Box], np.ndarray] = grabcut_box_init):
        self.backend = backend
        self.refiner = refiner
        self.box_to_mask = box_to_mask
        # Sees the base model's predictions before presence is decided and may replace them (the GPU
        # benchmark hands in true masks so that every stage runs for every object).
        self.on_predictions: PredictionHook | None = None
        self.memory = SmartMemory(config.memory)
        self.tracks: dict[int, _Track] = {}
        self.frame_index = 0
        self.frames_seen = 0  # the Frame index: unlike frame_index never reset, so caches cannot go stale
        self.consecutive_faults = 0
        self.configure(config)

    def configure(self, config: HQSMemConfig) -> None:
        """Apply new parameter values (the node calls this for dynamic parameters)."""
        self.config = config
        self.memory.config = config.memory
        if self.refiner is not None:
            self.refiner.config = config.refiner

    # -- objects ---------------------------------------------------------------------------------
    @property
    def object_ids(self) -> list[int]:
        return list(self.tracks)

    def remove(self, obj_ids: Iterable[int]) -> list[int]:
        """Stop tracking ``obj_ids``; returns the ids that were not tracked."""
        unknown = []
        for oid in obj_ids:
            if oid not in self.tracks:
                unknown.append(oid)
                continue
            del self.tracks[oid]
            self.backend.remove_object(oid)
            for key in self.memory.release(oid):
                self.backend.evict_memory(key)
        return unknown

    def reset(self) -> None:
        self.tracks.clear()
        self.memory.clear()
        self.backend.reset()
        self.frame_index = 0
        self.consecutive_faults = 0

    # -- the loop --------------------------------------------------------------------------------
    def process(self, pixels: np.ndarray, targets: Iterable[Target] = ()) -> FrameResult:
        """Track every object on ``pixels`` and start ``targets`` on it (checked for its size and for
        max_objects by ``core.session``; a target whose id is tracked re-initialises that object)."""
        t = self.frame_index
        self.frame_index += 1
        frame = Frame(self.frames_seen, pixels)
        self.frames_seen += 1
        timings: dict[str, float] = {}
        try:
            result = self._process(t, frame, list(targets), timings)
            self.consecutive_faults = 0
            return result
        except Exception as exc:  # one bad frame must not end the stream: report it, go on
            self.consecutive_faults += 1
            empty = np.zeros(frame.hw, bool)
            objects = [ObjectResult(oid, tr.label, False, 0.0, empty, None) for oid, tr in self.tracks.items()]
            return FrameResult(t, objects, ok=False, status=f"{type(exc).__name__}: {exc}",
                               memory_frames=len(self.memory), timings=timings)

    def _process(self, t: int, frame: Frame, targets: list[Target], timings: dict[str, float]) -> FrameResult:
        cfg = self.config.tracker
        restarted = {tg.obj_id for tg in targets if tg.obj_id in self.tracks}
        if restarted:
            self.remove(restarted)

        with _timed(timings, "base"):
            preds: dict[int, Prediction] = self.backend.step(frame) if self.tracks else {}
        if self.on_predictions is not None:
            preds = self.on_predictions(frame, preds)
        present = {oid: p.mask for oid, p in preds.items()
                   if p.confidence >= cfg.presence_threshold and p.mask.sum() >= max(cfg.min_area, 1)}

        refined: set[int] = set()
        accepted = {oid: (p.mask if oid in present else np.zeros_like(p.mask)) for oid, p in preds.items()}
        if self.refiner is not None and present:
            with _timed(timings, "refine"):
                for oid, r in self.refiner.refine(frame, present).items():
                    if r.accepted and r.mask.sum() >= max(cfg.min_area, 1):
                        accepted[oid] = r.mask
                        refined.add(oid)

        scores = {oid: p.confidence for oid, p in preds.items()}
        with _timed(timings, "init"):
            for tg in targets:
                mask = tg.mask if tg.mask is not None else self.box_to_mask(frame, tg.box)
                self.backend.add_object(tg.obj_id, frame, mask, key=t)
                self.tracks[tg.obj_id] = _Track(tg.label)
                accepted[tg.obj_id] = mask
                scores[tg.obj_id] = 1.0
                self.memory.pin(t, t, self.backend.embed({tg.obj_id: mask}), owner=tg.obj_id)

        self.backend.accept(accepted)  # teacher forcing: the accepted masks are the prior and the memory

        objects = []
        for oid, track in self.tracks.items():
            mask = accepted[oid]
            track.present = bool(mask.any())
            objects.append(ObjectResult(oid, track.label, track.present, float(scores[oid]) if track.present else 0.0,
                                        mask, mask_box(mask), oid in refined))

        visible = {o.obj_id: o.mask for o in objects if o.present}
        if visible and t % self.config.memory.update_every == 0:
            with _timed(timings, "memory"):
                update_memory(self.memory, self.backend, t, visible)
        return FrameResult(t, objects, memory_frames=len(self.memory), timings=timings)


def update_memory(memory: SmartMemory, backend: Backend, t: int,
                  visible: dict[int, np.ndarray]) -> MemoryDecision | None:
    """Step 5 on frame ``t``: the policy decides, the backend evicts and writes as told. Skipped (None) on
    a frame that is already a memory entry (a reference frame pinned on this frame)."""
    if t in memory.entries:
        return None
    embedding = backend.embed(visible)
    decision = memory.decide(t, embedding)
    for key in decision.evict:
        backend.evict_memory(key)
    if decision.write:
        backend.write_memory(t)
    memory.apply(decision, t, t, embedding)
    return decision


@contextmanager
def _timed(timings: dict[str, float], name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
