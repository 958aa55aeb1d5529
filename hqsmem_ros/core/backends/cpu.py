"""CPU backend: optical flow carries each accepted mask, pretrained features veto what the flow got
wrong, score the result and find the object again after it was lost. Runs on two laptop cores with no
GPU and no download.

Per frame (features and flow at a reduced working size, masks at full resolution):
  1. flow    DIS optical flow moves each object's previous accepted mask (``cpu_flow``: one
             similarity transform per object fitted to its interior flow, or a dense warp);
  2. correct EfficientNet-Lite0 cell features near the object are scored against the object's memory
             (foreground and background cells of its reference and key frames, ``cpu_appearance``).
             Features are 8 px cells, too coarse to place a boundary: they act on whole cells only
             where they clearly disagree with the flow. A cell the carried mask mostly covers is dropped
             when its logit is below ``-veto_logit`` (an occluder, drift); one it covers partly only
             below ``-veto_logit_partial``; a cell outside it that touches it is taken when its logit passes
             ``adopt_logit`` (``veto_logit`` while the object is much smaller than in memory: it is
             coming out from behind something). Elsewhere the flow's boundary stands;
  3. snap    within half a cell of the boundary each pixel's colour votes: more like the object's
             interior or like its surroundings on this frame (``color_vote``). This is what keeps a
             carried boundary from eroding or growing a halo over thousands of frames;
  4. drop    an object reduced to a fragment (``fragment_below`` of its largest size over its last
             ``size_window`` frames: an object moving away shrinks far below its size in memory without
             being cut off) is reported absent, and searched for again from the next frame (step 6);
  5. regrow  an object smaller than ``refine_below`` of its size in memory (flow that underestimates a
             thin object's motion shrinks it a little every frame; a part came back from behind an
             occluder) gets a proposal: GrabCut in its box, seeded by its mask. The proposal is verified
             by the features, as the method verifies SAM-HQ's by DINO: it is accepted only when the
             memory calls most of the cells it adds the object;
  6. search  an absent object is looked for over the whole frame (``cpu_appearance.redetect``);
  7. overlaps between objects go to the object with the strongest evidence.
Untracked look-alikes (regions near an object that its memory calls it as surely as cells it adopts, but
apart from it) are followed from frame to frame by the flow, cell by cell. Their predicted cells are
left out of the object's motion fit (while one is over the object it keeps the motion it had), of
the cells it adopts and of its regrowth; where one is in front of it (over it, the flow moves with the
look-alike) its cells are dropped; and an object that went absent with look-alikes recorded (all its
pixels went to other objects) is not searched for on them.
The confidence is the mean foreground probability over the mask's cells. Key frames only learn cells
the memory already agrees with (foreground it calls foreground, background it calls background), so a
mask that slipped or shrank does not teach it its error.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..box_init import grabcut
from ..config import param
from ..types import Frame, Prediction, mask_box
from .cpu_appearance import ObjectAppearance, ScoreParams, redetect
from .cpu_features import STRIDE, FeatureExtractor, cell_coverage, pooled
from .cpu_flow import MOTION_MODELS, PRESETS, FlowWarper


_LOOKALIKE_SHARE = 0.1  # least size of a look-alike region, as a share of the object's recent size
_HOLD_FRAMES = 30       # most frames in a row an object keeps its last shift under a look-alike


@dataclass(frozen=True)
class FlowConfig:
    """Step 1: how DIS optical flow is computed."""
    enabled: bool = param(True, "Carry masks with DIS optical flow (off: the previous mask stays in place)",
                          advanced=True)
    preset: str = param("ultrafast", "DIS optical-flow preset", choices=tuple(PRESETS), advanced=True)
    finest_scale: int = param(0, "Finest DIS pyramid level (0 = working size; each level halves it): finer is "
                              "slower and more exact", min=0, max=4, advanced=True)


@dataclass(frozen=True)
class CorrectionConfig:
    """Steps 2 and 4: where the features overrule the flow, and when what is left is only a fragment."""
    enabled: bool = param(True, "Correct the carried mask with the feature logit and score it (off: the flow "
                          "alone, confidence 1)", advanced=True)
    veto_logit: float = param(3.0, "A feature cell the carried mask mostly covers is dropped when its logit is "
                              "below minus this", min=0.0, max=100.0, advanced=True)
    veto_logit_partial: float = param(6.0, "A feature cell the carried mask covers partly is dropped when its "
                                      "logit is below minus this", min=0.0, max=100.0, advanced=True)
    adopt_logit: float = param(4.0, "A feature cell outside the carried mask is taken when its logit exceeds "
                               "this", min=0.0, max=100.0, advanced=True)
    regrow_below: float = param(0.7, "An object smaller than this fraction of its largest size in memory takes "
                                "cells at veto_logit instead of adopt_logit", min=0.0, max=1.0, advanced=True)
    search_margin: float = param(0.5, "Feature correction looks this fraction of the object's size around the "
                                 "carried mask", min=0.0, max=4.0, advanced=True)
    fragment_below: float = param(0.15, "An object reduced to less than this fraction of its largest size over "
                                  "the last size_window frames it was seen is reported absent and searched for",
                                  min=0.0, max=1.0, advanced=True)
    size_window: int = param(60, "Frames over which an object's recent size is taken (the fragment and "
                             "re-detection sizes): an object that shrinks slower than this is scaling, not "
                             "being cut off", min=1, max=10000, advanced=True)


@dataclass(frozen=True)
class BoundaryConfig:
    """Step 3: the per-frame colour vote that places the boundary."""
    color_vote: float = param(0.5, "Weight of the colour vote near the mask boundary (is a pixel's colour more "
                              "like the object's interior or its surroundings?); 0 switches it off",
                              min=0.0, max=10.0, advanced=True)
    color_band: float = param(0.5, "Half-width of the boundary band the colour vote acts in, in feature cells",
                              min=0.0, max=4.0, advanced=True)


@dataclass(frozen=True)
class RegrowthConfig:
    """Step 5: the GrabCut proposal for a shrunken object and its verification."""
    refine_below: float = param(0.9, "An object smaller than this fraction of its largest size in memory gets a "
                                "GrabCut proposal seeded by its mask (0 switches it off)", min=0.0, max=1.0,
                                advanced=True)
    refine_accept: float = param(0.8, "The proposal is accepted when at least this share of the feature cells "
                                 "it adds are ones the memory calls the object", min=0.0, max=1.0, advanced=True)


@dataclass(frozen=True)
class RedetectionConfig:
    """Step 6: what a region found over the whole frame must be to count as the lost object."""
    similarity: float = param(0.6, "Least mean foreground similarity of a re-detected region", min=-1.0, max=1.0,
                              advanced=True)
    min_size: float = param(0.25, "Least size of a re-detected region, as a fraction of the object's largest "
                            "size over the last correction.size_window frames it was seen", min=0.0, max=1.0,
                            advanced=True)


@dataclass(frozen=True)
class CellMemoryConfig:
    """What each object's memory stores and how a feature cell is scored against it."""
    fg_cells: int = param(64, "Most foreground cells stored per object and memory entry", min=1, max=4096,
                          advanced=True)
    bg_cells: int = param(128, "Most background cells stored per object and memory entry", min=0, max=4096,
                          advanced=True)
    top_k: int = param(3, "Nearest memory cells averaged into a foreground / background similarity",
                       min=1, max=64, advanced=True)
    novel_similarity: float = param(0.4, "Floor of the background similarity: content unlike both the object "
                                    "and its remembered surroundings counts as background",
                                    min=-1.0, max=1.0, advanced=True)
    temperature: float = param(0.05, "Feature logit = (foreground - background similarity) / temperature",
                               min=0.001, max=10.0, advanced=True)


@dataclass(frozen=True)
class CpuBackendConfig:
    """The choices a user makes, then each stage's tuned settings (advanced)."""
    threads: int = param(0, "torch / OpenCV threads used by the CPU backend (its optical flow runs beside the "
                         "network on one more); 0: auto (2, or 1 on a machine with 2 cores or fewer)", min=0, max=64)
    work_short_side: int = param(288, "Short side (pixels) of the working size; masks come back at full "
                                 "resolution", min=96, max=1080)
    motion_model: str = param("similarity", "How the flow moves a mask: similarity (one rotation + scale + "
                              "shift per object fitted to its interior flow) or dense (pixel-wise warp)",
                              choices=MOTION_MODELS)
    redetect: bool = param(True, "Search the whole frame for an absent object (off: once lost, stays lost)")
    flow: FlowConfig = field(default_factory=FlowConfig)
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)
    boundary: BoundaryConfig = field(default_factory=BoundaryConfig)
    regrowth: RegrowthConfig = field(default_factory=RegrowthConfig)
    redetection: RedetectionConfig = field(default_factory=RedetectionConfig)
    memory: CellMemoryConfig = field(default_factory=CellMemoryConfig)

    # The flat names of the previous release; drop them in the next one.
    DEPRECATED_NAMES: ClassVar[dict[str, str]] = {
        "flow": "flow.enabled", "flow_preset": "flow.preset", "flow_finest_scale": "flow.finest_scale",
        "correction": "correction.enabled", "veto_logit": "correction.veto_logit",
        "veto_logit_partial": "correction.veto_logit_partial", "adopt_logit": "correction.adopt_logit",
        "regrow_below": "correction.regrow_below", "search_margin": "correction.search_margin",
        "fragment_below": "correction.fragment_below",
        "color_vote": "boundary.color_vote", "color_band": "boundary.color_band",
        "refine_below": "regrowth.refine_below", "refine_accept": "regrowth.refine_accept",
        "redetect_similarity": "redetection.similarity", "redetect_min_size": "redetection.min_size",
        "fg_cells": "memory.fg_cells", "bg_cells": "memory.bg_cells", "top_k": "memory.top_k",
        "novel_similarity": "memory.novel_similarity", "temperature": "memory.temperature",
    }


@dataclass
class _Object:
    prior: np.ndarray                     # accepted mask of the previous frame (bool, full resolution)
    sizes: deque[float]                   # its size (cells) on the last frames it was seen
    appearance: ObjectAppearance = field(default_factory=ObjectAppearance)
    box: tuple[int, int, int, int] | None = None  # the prior's box (y0, y1, x0, x1); None when it is empty
    lookalikes: np.ndarray | None = None  # (rows, cols) cells of untracked look-alikes near it, previous frame
    velocity: np.ndarray | None = None    # how far the flow moved it last while no look-alike was over it
    held_for: int = 0                     # frames in a row a look-alike has been over it

    def set_prior(self, mask: np.ndarray, cell_area: float) -> None:
        """``cell_area``: frame pixels per feature cell."""
        self.prior = mask.astype(bool)
        b = mask_box(self.prior)
        self.box = None if b is None else (b[1], b[3], b[0], b[2])
        if self.box is not None:
            y0, y1, x0, x1 = self.box
            self.sizes.append(float(self.prior[y0:y1, x0:x1].sum()) / cell_area)

    def recent_size(self) -> float:
        """Its largest size over the recent frames it was seen: what it may have shrunk from. Not the largest
        in memory: an object moving away keeps its first, larger views there."""
        return max(self.sizes, default=self.appearance.largest())

    def coverage(self, grid: tuple[int, int]) -> np.ndarray:
        """The prior's cell coverage, computed over its box only."""
        if self.box is None:
            return np.zeros(grid, np.float32)
        y0, y1, x0, x1 = self.box
        return cell_coverage(self.prior[y0:y1, x0:x1], grid, self.prior.shape, self.box)


@dataclass
class _Evidence:
    """Per-pixel evidence (> 0 = the object) over the box (y0, y1, x0, x1) of the frame it concerns."""
    box: tuple[int, int, int, int]
    values: np.ndarray


@dataclass
class _Frame:
    """One frame as the backend sees it."""
    index: int               # the Frame's index: whether this frame was analysed already
    source: np.ndarray       # its pixels
    gray: np.ndarray         # working size
    feats: torch.Tensor      # (C, rows, cols) unit cell features
    cells: torch.Tensor      # (rows*cols, C) the same, one row per cell


class CpuBackend:
    name = "cpu"
    device = "cpu"

    @staticmethod
    def threads(config: CpuBackendConfig) -> int:
        """``config.threads``, with 0 resolved. Two threads leave no core free on a 2-core machine: then any other
        busy process (a camera publishing as fast as it can) preempts one of them, and OpenMP's spin-waits turn
        that into a collapse (3 objects, 640x480: 10 fps alone, 1-2 fps beside the camera; 1 thread: 8-9 fps
        alone, 6-7 beside it; README, "Floods"). The flow's own thread (``_analyse``) does not spin-wait: beside
        such a camera the node tracks as fast as it did without that thread."""
        return config.threads or (2 if len(os.sched_getaffinity(0)) > 2 else 1)

    def __init__(self, config: CpuBackendConfig = CpuBackendConfig(), extractor: FeatureExtractor | None = None):
        threads = self.threads(config)
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        self.config = config
        self.extractor = extractor or FeatureExtractor()
        self.flow = FlowWarper(config.flow.preset, config.flow.finest_scale, config.motion_model)
        self.scoring = ScoreParams(config.memory.top_k, config.memory.novel_similarity, config.memory.temperature)
        self.objects: dict[int, _Object] = {}
        self._current: _Frame | None = None
        self._previous_gray: np.ndarray | None = None
        self._flow_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hqsmem_flow")

    # -- frames ----------------------------------------------------------------------------------
    def _work_size(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(width, height) with the configured short side (never enlarged), multiples of 2 * STRIDE."""
        h, w = shape
        s = min(1.0, self.config.work_short_side / min(h, w))
        q = 2 * STRIDE
        return max(q, round(w * s / q) * q), max(q, round(h * s / q) * q)

    def _analyse(self, frame: Frame, flow: bool = False) -> _Frame:
        """The frame at working size and its cell features; with ``flow``, also the flow from the previous
        accepted frame to it, computed on a second thread while the network runs: the two are independent
        and both release the GIL (README, "CPU backend on the varied scenes")."""
        if self._current is not None and self._current.index == frame.index:
            if flow:
                self._update_flow(self._current.gray)
            return self._current
        small = cv2.resize(frame.pixels, self._work_size(frame.hw), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        pending = self._flow_thread.submit(self._update_flow, gray) if flow else None
        feats = self.extractor(small)
        if pending is not None:
            pending.result()
        self._current = _Frame(frame.index, frame.pixels, gray, feats, feats.flatten(1).T.contiguous())
        return self._current

    def _update_flow(self, gray: np.ndarray) -> None:
        self.flow.update(self._previous_gray if self.config.flow.enabled else None, gray)

    # -- objects ---------------------------------------------------------------------------------
    def add_object(self, obj_id: int, frame: Frame, mask: np.ndarray, key: int) -> None:
        cur = self._analyse(frame)
        obj = _Object(mask, deque(maxlen=self.config.correction.size_window))
        obj.set_prior(mask, _cell_area(cur))
        coverage = obj.coverage(cur.feats.shape[-2:])
        if not obj.appearance.store(key, cur.cells, coverage, self.config.memory.fg_cells,
                                    self.config.memory.bg_cells):
            # too small for one whole cell: describe it by the cells it touches most
            obj.appearance.store(key, cur.cells, coverage / max(coverage.max(), 1e-6), self.config.memory.fg_cells,
                                 self.config.memory.bg_cells)
        self.objects[obj_id] = obj

    def remove_object(self, obj_id: int) -> None:
        self.objects.pop(obj_id, None)

    def reset(self) -> None:
        self.objects.clear()
        self._current = None
        self._previous_gray = None

    # -- the step --------------------------------------------------------------------------------
    def step(self, frame: Frame) -> dict[int, Prediction]:
        cur = self._analyse(frame, flow=True)
        shape = frame.hw
        grid = cur.feats.shape[-2:]
        # Where the tracked objects were on the previous frame: an absent object is not searched for there (a
        # tracked look-alike's cells look like it too).
        held = (sum((o.coverage(grid) for o in self.objects.values()), np.zeros(grid, np.float32))
                if any(o.box is None for o in self.objects.values()) else None)
        found = {}
        for oid, obj in self.objects.items():
            result = self._follow(obj, cur) if obj.box is not None else self._search(obj, cur, shape, held)
            if result is not None:
                found[oid] = result
        owner = _strongest({oid: ev for oid, (ev, _) in found.items()}, shape)
        return {oid: Prediction(owner == oid, found[oid][1]) if oid in found else
                Prediction(np.zeros(shape, bool), 0.0) for oid in self.objects}

    def _follow(self, obj: _Object, cur: _Frame) -> tuple[_Evidence, float] | None:
        """Evidence and confidence of a present object, or None when it is gone or reduced to a
        fragment."""
        cfg = self.config
        rows, cols = cur.feats.shape[-2:]
        # where its look-alikes are now: their flow is not the object's, and their cells, which score like it,
        # are not it growing
        near = None if obj.lookalikes is None else self.flow.move_cells(obj.lookalikes) >= 0.25
        ignore = None if near is None else near.repeat(STRIDE, 0).repeat(STRIDE, 1)
        obj.lookalikes = None  # a fragment drops them (keeping them: README, "CPU backend on the varied scenes")
        # while a look-alike is over it, the flow there is partly the look-alike's: it keeps the motion it had,
        # for a while (where look-alikes never leave it, an extrapolated motion would carry it away)
        under = near is not None and bool((near & (obj.coverage((rows, cols)) >= 0.5)).any())
        obj.held_for = obj.held_for + 1 if under else 0
        hold = under and obj.velocity is not None and obj.held_for <= _HOLD_FRAMES
        moved, moved_box, moved_by = self.flow.warp(obj.prior, obj.box, ignore, obj.velocity if hold else None)
        if not under:
            obj.velocity = moved_by
        shape = obj.prior.shape
        if not cfg.correction.enabled:
            return _Evidence(moved_box, 2 * moved - 1), 1.0
        coverage = cell_coverage(moved, (rows, cols), shape, moved_box)
        carried = coverage > 0.01
        window = _window(carried, cfg.correction.search_margin)
        if window is None:
            return None
        r0, r1, c0, c1 = window
        idx = (np.arange(r0, r1)[:, None] * cols + np.arange(c0, c1)[None, :]).ravel()
        _, logit = obj.appearance.scores(cur.cells[idx], self.scoring)
        logit_grid = np.zeros((rows, cols), np.float32)
        logit_grid[r0:r1, c0:c1] = logit.reshape(r1 - r0, c1 - c0)
        largest = obj.appearance.largest()
        adopt_at = (cfg.correction.veto_logit if coverage.sum() < cfg.correction.regrow_below * largest
                    else cfg.correction.adopt_logit)
        veto = (((logit_grid < -cfg.correction.veto_logit) & (coverage >= 0.5))
                | (logit_grid < -cfg.correction.veto_logit_partial))
        front = None if near is None else self._in_front(near, coverage >= 0.5)
        if front is not None:
            veto |= front
        # taken cells must touch the carried mask: a look-alike nearby is not the object growing
        touching = cv2.dilate(carried.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        adopt = touching & (coverage < 0.5) & (logit_grid > adopt_at)
        if near is not None:
            adopt &= ~near
        # whole cells change (their share of the mask goes to 0 or 1); the rest keeps the flow's boundary
        change = np.where(veto, -coverage, np.where(adopt, 1 - coverage, 0)).astype(np.float32)
        y0, y1 = r0 * shape[0] // rows, -(-r1 * shape[0] // rows)
        x0, x1 = c0 * shape[1] // cols, -(-c1 * shape[1] // cols)
        warped = _paste_into(moved, moved_box, (y0, y1, x0, x1))
        values = 2 * warped - 1 + 2 * _upsample(change, shape, (y0, y1, x0, x1))
        cell_px = STRIDE * shape[0] / cur.gray.shape[0]  # a feature cell's side in frame pixels
        if cfg.boundary.color_vote > 0:  # pixel-level: place the boundary where the colours change
            band = max(1, round(cfg.boundary.color_band * cell_px))
            values += cfg.boundary.color_vote * _color_vote(cur.source[y0:y1, x0:x1], values > 0, band)
        kept = _without_specks(values > 0)
        values[~kept] = np.minimum(values[~kept], 0)
        size = kept.sum() * rows * cols / (shape[0] * shape[1])  # in cells, as memory measures it
        if size < cfg.correction.fragment_below * obj.recent_size():
            return None
        if size < cfg.regrowth.refine_below * largest:
            proposal = _grabcut_regrow(cur.source[y0:y1, x0:x1], kept, max(1, round(cell_px / 2)))
            ours = logit_grid if near is None else np.where(near, -1.0, logit_grid)  # a look-alike is not it
            if proposal is not None and _adds_the_object(proposal, kept, ours[r0:r1, c0:c1],
                                                         cfg.regrowth.refine_accept):
                values = np.where(proposal, np.maximum(values, 0.5), np.minimum(values, -0.5))
                kept = proposal
        obj.lookalikes = self._lookalikes(logit_grid, window, kept, near, front, obj.recent_size())
        return _Evidence((y0, y1, x0, x1), values), _mean_probability(logit_grid[r0:r1, c0:c1], kept)

    def _in_front(self, near: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Of the cells ``near`` where look-alikes are predicted, those where a look-alike is in front of the
        object (whose cells are ``own``): outside the object, and over it where the flow moves with the
        look-alikes' part outside it rather than with the object's part outside them (the front layer
        moves the pixels). Over an object they cover entirely, all of them; of ones it covers entirely, none."""
        mine, theirs, overlap = own & ~near, near & ~own, near & own
        if not overlap.any() or not mine.any():
            return near
        if not theirs.any():
            return np.zeros_like(near)
        flow = self.flow.cell_flow(near.shape)
        to_mine = np.linalg.norm(flow - np.median(flow[mine], 0), axis=-1)
        to_theirs = np.linalg.norm(flow - np.median(flow[theirs], 0), axis=-1)
        return theirs | (overlap & (to_theirs < to_mine))

    def _lookalikes(self, logit: np.ndarray, window: tuple[int, int, int, int], kept: np.ndarray,
                    near: np.ndarray | None, front: np.ndarray | None, size: float) -> np.ndarray | None:
        """The cells (a grid like ``logit``) of untracked look-alikes near an object: regions in its ``window``
        (cell rows/cols r0, r1, c0, c1) outside its mask ``kept`` (over the window) that the memory calls it as
        surely as cells it adopts, at least ``_LOOKALIKE_SHARE`` of its ``size`` (one entering the window shows
        only part of itself), and apart from it, or over where a look-alike was predicted (``near``): one that
        touches it came from elsewhere; and the cells of a look-alike in ``front`` of it that still score like
        it. None when there are none."""
        cfg = self.config
        r0, r1, c0, c1 = window
        own = cell_coverage(kept, (r1 - r0, c1 - c0)) >= 0.5
        strong = (logit[r0:r1, c0:c1] > cfg.correction.adopt_logit) & ~own
        n, labels, stats, _ = cv2.connectedComponentsWithStats(strong.astype(np.uint8), connectivity=8)
        beside = cv2.dilate(own.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        was = None if near is None else near[r0:r1, c0:c1]
        out = np.zeros(logit.shape, np.float32)
        for lab in range(1, n):
            region = labels == lab
            if stats[lab, cv2.CC_STAT_AREA] < max(2.0, _LOOKALIKE_SHARE * size):
                continue
            if (region & beside).any() and (was is None or not (region & was).any()):
                continue
            out[r0:r1, c0:c1][region] = 1
        if front is not None:
            out[front & (logit > cfg.correction.adopt_logit)] = 1
        return out if out.any() else None

    def _search(self, obj: _Object, cur: _Frame, shape: tuple[int, int],
                held: np.ndarray) -> tuple[_Evidence, float] | None:
        """Evidence and confidence of an absent object found again anywhere but in the cells the tracked objects
        mostly covered on the previous frame (``held``: their summed cell coverage), or None."""
        cfg = self.config
        if not (cfg.redetect and cfg.correction.enabled):
            return None
        rows, cols = cur.feats.shape[-2:]
        s_fg, logit = obj.appearance.scores(cur.cells, self.scoring)
        s_fg, logit = s_fg.reshape(rows, cols), logit.reshape(rows, cols)
        # its untracked look-alikes, followed while it is hidden, are not it either
        if obj.lookalikes is not None:
            near = self.flow.move_cells(obj.lookalikes) >= 0.5
            seen = near & (logit > cfg.correction.adopt_logit)
            obj.lookalikes = seen.astype(np.float32) if seen.any() else None
            held = held + near
        logit = np.where(held < 0.5, logit, np.minimum(logit, -cfg.correction.veto_logit))
        region = redetect(s_fg, logit, max(1.0, cfg.redetection.min_size * obj.recent_size()),
                          cfg.redetection.similarity)
        if region is None:
            return None
        grown = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        logit_grid = np.where(grown, logit, -cfg.correction.veto_logit).astype(np.float32)
        values = _upsample(logit_grid, shape)
        return _Evidence((0, shape[0], 0, shape[1]), values), _mean_probability(logit_grid, values > 0)

    # -- teacher forcing and memory ---------------------------------------------------------------
    def accept(self, masks: dict[int, np.ndarray]) -> None:
        if self._current is None:  # nothing tracked yet
            return
        for oid, mask in masks.items():
            self.objects[oid].set_prior(mask, _cell_area(self._current))
        self._previous_gray = self._current.gray

    def embed(self, masks: dict[int, np.ndarray]) -> np.ndarray:
        feats = self._current.feats
        per_object = [v for m in masks.values() if (v := pooled(feats, m)) is not None]
        if not per_object:
            return F.normalize(feats.mean(dim=(1, 2)), dim=0).numpy()
        return F.normalize(torch.stack(per_object).mean(dim=0), dim=0).numpy()

    def write_memory(self, key: int) -> None:
        cur = self._current
        for obj in self.objects.values():
            if obj.box is not None:
                obj.appearance.store(key, cur.cells, obj.coverage(cur.feats.shape[-2:]),
                                     self.config.memory.fg_cells, self.config.memory.bg_cells, self.scoring)

    def evict_memory(self, key: int) -> None:
        for obj in self.objects.values():
            obj.appearance.evict(key)

    def memory_keys(self) -> list[int]:
        return sorted({k for obj in self.objects.values() for k in obj.appearance.entries})

    def memory_bytes(self) -> int:
        return sum(obj.appearance.nbytes() for obj in self.objects.values())


def _cell_area(cur: _Frame) -> float:
    """Frame pixels per feature cell."""
    rows, cols = cur.feats.shape[-2:]
    return cur.source.shape[0] * cur.source.shape[1] / (rows * cols)


def _window(cells: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
    """Cell rows/cols (r0, r1, c0, c1) around the true ``cells`` expanded by ``margin`` of their extent."""
    ys, xs = np.nonzero(cells)
    if ys.size == 0:
        return None
    rows, cols = cells.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    dy, dx = max(1, round(margin * (y1 - y0))), max(1, round(margin * (x1 - x0)))
    return max(0, y0 - dy), min(rows, y1 + dy), max(0, x0 - dx), min(cols, x1 + dx)


def _paste_into(values: np.ndarray, box: tuple[int, int, int, int], window: tuple[int, int, int, int]) -> np.ndarray:
    """``values`` over ``box`` (y0, y1, x0, x1) placed into a zero array over ``window`` (cropped to it)."""
    y0, y1, x0, x1 = window
    out = np.zeros((y1 - y0, x1 - x0), np.float32)
    iy0, iy1, ix0, ix1 = max(y0, box[0]), min(y1, box[1]), max(x0, box[2]), min(x1, box[3])
    if iy1 > iy0 and ix1 > ix0:
        out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = values[iy0 - box[0]:iy1 - box[0], ix0 - box[2]:ix1 - box[2]]
    return out


def _disc(radius: int) -> np.ndarray:
    """Structuring element: a disc of ``radius`` pixels."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def _color_vote(rgb: np.ndarray, mask: np.ndarray, band: int) -> np.ndarray:
    """Per pixel in [-1, 1]: how much more the pixel's colour is like the mask's interior than like its
    surroundings, within ``band`` pixels of the mask's boundary (0 elsewhere)."""
    m, kernel = mask.astype(np.uint8), _disc(band)
    inner, outer = cv2.erode(m, kernel) > 0, cv2.dilate(m, kernel) > 0
    if not inner.any() or outer.all():
        return np.zeros(mask.shape, np.float32)
    q = rgb.astype(np.int32) >> 4
    code = (q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2]
    fg = np.bincount(code[inner], minlength=4096) / inner.sum()
    bg = np.bincount(code[~outer], minlength=4096) / (~outer).sum()
    vote = ((fg - bg) / (fg + bg + 1e-3)).astype(np.float32)[code]
    vote[~outer | inner] = 0
    return vote


def _grabcut_regrow(rgb: np.ndarray, mask: np.ndarray, band: int) -> np.ndarray | None:
    """GrabCut's segmentation of ``rgb`` seeded by ``mask`` (its core certain, the mask and ``band`` pixels
    around it uncertain, the rest of the crop background), without specks; None when it cannot run.
    ``band``: how far the mask may be wrong (half a feature cell, what the features cannot resolve)."""
    box = mask_box(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box  # GrabCut costs per pixel: the mask's box, the band and as much background again
    h, w = mask.shape
    x0, y0, x1, y1 = max(0, x0 - 2 * band), max(0, y0 - 2 * band), min(w, x1 + 2 * band), min(h, y1 + 2 * band)
    m = mask[y0:y1, x0:x1].astype(np.uint8)
    core = cv2.erode(m, np.ones((5, 5), np.uint8)) > 0
    if not core.any():
        return None
    seeds = np.full(m.shape, cv2.GC_BGD, np.uint8)
    seeds[cv2.dilate(m, _disc(band)) > 0] = cv2.GC_PR_BGD
    seeds[m > 0] = cv2.GC_PR_FGD
    seeds[core] = cv2.GC_FGD
    try:
        grabcut(np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1]), seeds, None, np.zeros((1, 65)),
                np.zeros((1, 65)), 1, cv2.GC_INIT_WITH_MASK)  # one iteration: as good as two here, 30 % cheaper
    except cv2.error:  # e.g. no background seed left in a crop the object fills
        return None
    out = np.zeros_like(mask, dtype=bool)
    out[y0:y1, x0:x1] = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    return _without_specks(out)


def _adds_the_object(proposal: np.ndarray, mask: np.ndarray, logit: np.ndarray, share: float) -> bool:
    """Whether ``proposal`` adds feature cells to ``mask`` (both over the area of the ``logit`` grid) and at
    least ``share`` of them have a positive logit (the memory calls them the object)."""
    added = (cell_coverage(proposal, logit.shape) >= 0.5) & (cell_coverage(mask, logit.shape) < 0.5)
    return bool(added.any()) and float((logit[added] > 0).mean()) >= share


def _without_specks(mask: np.ndarray, least: float = 0.1) -> np.ndarray:
    """``mask`` without the connected pieces smaller than ``least`` of its largest piece (crumbs that
    whole-cell decisions leave behind), keeping an object an occluder splits into comparable parts."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.concatenate([[False], areas >= least * areas.max()])
    return keep[labels]


def _upsample(grid: np.ndarray, shape: tuple[int, int], box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``grid`` resized bilinearly to ``shape``; with ``box`` = (y0, y1, x0, x1) only that crop of it,
    computed directly (the same values, without resizing the whole frame for every object)."""
    if box is None:
        return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    y0, y1, x0, x1 = box
    sy, sx = grid.shape[0] / shape[0], grid.shape[1] / shape[1]
    crop = np.array([[sx, 0, (x0 + 0.5) * sx - 0.5], [0, sy, (y0 + 0.5) * sy - 0.5]])  # cv2.resize's pixel centres
    return cv2.warpAffine(grid, crop, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _mean_probability(logit_grid: np.ndarray, mask: np.ndarray) -> float:
    """Mean foreground probability over the cells of ``logit_grid`` that ``mask`` (covering the same area at
    any resolution) covers at least half."""
    inside = cell_coverage(mask, logit_grid.shape) >= 0.5
    if not inside.any():
        inside = cell_coverage(mask, logit_grid.shape) > 0
    if not inside.any():
        return 0.0
    return float((1 / (1 + np.exp(-logit_grid[inside]))).mean())


def _strongest(evidence: dict[int, _Evidence], shape: tuple[int, int]) -> np.ndarray:
    """Per pixel, the id of the object with the highest positive evidence (overlaps go to the
    strongest), -1 where no object has any."""
    owner = np.full(shape, -1, np.int64)
    best = np.zeros(shape, np.float32)
    for oid, ev in evidence.items():
        y0, y1, x0, x1 = ev.box
        wins = ev.values > best[y0:y1, x0:x1]
        best[y0:y1, x0:x1][wins] = ev.values[wins]
        owner[y0:y1, x0:x1][wins] = oid
    return owner
