"""CPU backend: optical flow carries each accepted mask, pretrained features correct it, score it and
find the object again after it was lost. Runs on two laptop cores with no GPU and no download.

Per frame, at a reduced working size:
  1. flow    DIS optical flow moves each object's previous accepted soft mask (``cpu_flow``: one
             similarity transform per object fitted to its interior flow, or a dense warp);
  2. correct EfficientNet-Lite0 cell features near the object are scored against the object's memory
             (foreground and background cells of its reference and key frames, ``cpu_appearance``);
             the mask's evidence is ``flow_confidence * (2 * warped - 1) + feature logit``, so features
             overrule the flow only where they are confident (occluders, drift). Positive feature
             evidence is discounted (``feature_growth``) unless the object is much smaller than in
             memory, i.e. coming out from behind something (``regrow_below``);
  3. search  an absent object is looked for over the whole frame (``cpu_appearance.redetect``);
  4. overlaps between objects go to the object with the strongest evidence.
The confidence is the mean foreground probability over the mask's cells. Key frames only learn
foreground cells that the memory already recognises, so a mask that slipped does not teach it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..config import param
from ..tracker import HQSMemConfig, HQSMemTracker
from ..types import Prediction
from .cpu_appearance import ObjectAppearance, ScoreParams, redetect
from .cpu_features import STRIDE, FeatureExtractor, cell_coverage, pooled
from .cpu_flow import MOTION_MODELS, PRESETS, FlowWarper


@dataclass(frozen=True)
class CpuBackendConfig:
    threads: int = param(2, "torch / OpenCV threads used by the CPU backend", min=1, max=64)
    work_short_side: int = param(288, "Short side (pixels) of the working size; masks come back at full "
                                 "resolution", min=96, max=1080)
    flow: bool = param(True, "Carry masks with DIS optical flow (off: the previous mask stays in place)")
    flow_preset: str = param("fast", "DIS optical-flow preset", choices=tuple(PRESETS))
    flow_finest_scale: int = param(1, "Finest DIS pyramid level (0 = working size; each level halves it): "
                                   "finer is slower and more exact", min=0, max=4)
    motion_model: str = param("similarity", "How the flow moves a mask: similarity (one rotation + scale + "
                              "shift per object fitted to its interior flow) or dense (pixel-wise warp)",
                              choices=MOTION_MODELS)
    flow_confidence: float = param(3.0, "Weight of the flow-carried mask against the feature logit; a "
                                   "feature logit must exceed it to remove or add a pixel", min=0.0, max=100.0)
    correction: bool = param(True, "Correct the carried mask with the feature logit and score it (off: "
                             "the flow alone, confidence 1)")
    feature_growth: float = param(0.3, "Weight of positive feature evidence (growing a mask) relative to "
                                  "negative (shrinking it)", min=0.0, max=1.0)
    regrow_below: float = param(0.7, "An object smaller than this fraction of its largest size in memory "
                                "grows by the full feature evidence", min=0.0, max=1.0)
    search_margin: float = param(0.5, "Feature correction looks this fraction of the object's size around "
                                 "the carried mask", min=0.0, max=4.0)
    top_k: int = param(3, "Nearest memory cells averaged into a foreground / background similarity",
                       min=1, max=64)
    novel_similarity: float = param(0.4, "Floor of the background similarity: content unlike both the "
                                    "object and its remembered surroundings counts as background",
                                    min=-1.0, max=1.0)
    temperature: float = param(0.05, "Feature logit = (foreground - background similarity) / temperature",
                               min=0.001, max=10.0)
    redetect: bool = param(True, "Search the whole frame for an absent object (off: once lost, stays lost)")
    redetect_similarity: float = param(0.6, "Least mean foreground similarity of a re-detected region",
                                       min=-1.0, max=1.0)
    redetect_min_size: float = param(0.25, "Least size of a re-detected region, as a fraction of the "
                                     "object's last known size", min=0.0, max=1.0)
    fg_cells: int = param(64, "Most foreground cells stored per object and memory entry", min=1, max=4096)
    bg_cells: int = param(128, "Most background cells stored per object and memory entry", min=0, max=4096)


@dataclass
class _Object:
    prior: np.ndarray                     # accepted soft mask of the previous frame, working size
    area_cells: float                     # last known size in feature cells (re-detection's size prior)
    appearance: ObjectAppearance = field(default_factory=ObjectAppearance)


@dataclass
class _Frame:
    """One frame as the backend sees it."""
    source: np.ndarray       # the caller's array (identity tells whether a frame was analysed)
    gray: np.ndarray         # working size
    feats: torch.Tensor      # (C, rows, cols) unit cell features
    cells: torch.Tensor      # (rows*cols, C) the same, one row per cell


class CpuBackend:
    name = "cpu"

    def __init__(self, config: CpuBackendConfig = CpuBackendConfig(), extractor: FeatureExtractor | None = None):
        torch.set_num_threads(config.threads)
        cv2.setNumThreads(config.threads)
        self.config = config
        self.extractor = extractor or FeatureExtractor()
        self.flow = FlowWarper(config.flow_preset, config.flow_finest_scale, config.motion_model)
        self.scoring = ScoreParams(config.top_k, config.novel_similarity, config.temperature)
        self.objects: dict[int, _Object] = {}
        self._current: _Frame | None = None
        self._previous_gray: np.ndarray | None = None

    # -- frames ----------------------------------------------------------------------------------
    def _work_size(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(width, height) with the configured short side (never enlarged), multiples of 2 * STRIDE."""
        h, w = shape
        s = min(1.0, self.config.work_short_side / min(h, w))
        q = 2 * STRIDE
        return max(q, round(w * s / q) * q), max(q, round(h * s / q) * q)

    def _analyse(self, frame: np.ndarray) -> _Frame:
        if self._current is not None and self._current.source is frame:
            return self._current
        small = cv2.resize(frame, self._work_size(frame.shape[:2]), interpolation=cv2.INTER_AREA)
        feats = self.extractor(small)
        self._current = _Frame(frame, cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), feats,
                               feats.flatten(1).T.contiguous())
        return self._current

    def _to_work(self, mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.float32), self._work_size(mask.shape), interpolation=cv2.INTER_AREA)

    # -- objects ---------------------------------------------------------------------------------
    def add_object(self, obj_id: int, frame: np.ndarray, mask: np.ndarray, key: int) -> None:
        cur = self._analyse(frame)
        prior = self._to_work(mask)
        coverage = cell_coverage(prior, cur.feats.shape[-2:])
        obj = _Object(prior, float(coverage.sum()))
        if not obj.appearance.store(key, cur.cells, coverage, self.config.fg_cells, self.config.bg_cells):
            # too small for one whole cell: describe it by the cells it touches most
            obj.appearance.store(key, cur.cells, coverage / max(coverage.max(), 1e-6), self.config.fg_cells,
                                 self.config.bg_cells)
        self.objects[obj_id] = obj

    def remove_object(self, obj_id: int) -> None:
        self.objects.pop(obj_id, None)

    def reset(self) -> None:
        self.objects.clear()
        self._current = None
        self._previous_gray = None

    # -- the step --------------------------------------------------------------------------------
    def step(self, frame: np.ndarray) -> dict[int, Prediction]:
        cur = self._analyse(frame)
        self.flow.update(self._previous_gray if self.config.flow else None, cur.gray)
        evidence, confidence = {}, {}
        for oid, obj in self.objects.items():
            found = self._follow(obj, cur) if obj.prior.max() >= 0.5 else self._search(obj, cur)
            if found is not None:
                evidence[oid], confidence[oid] = found
        owner = _strongest(evidence)
        out = {}
        full = frame.shape[1], frame.shape[0]
        for oid in self.objects:
            if oid not in evidence:
                out[oid] = Prediction(np.zeros(frame.shape[:2], bool), 0.0)
                continue
            mine = np.where(owner == oid, evidence[oid], -1.0).astype(np.float32)
            out[oid] = Prediction(cv2.resize(mine, full, interpolation=cv2.INTER_LINEAR) > 0, confidence[oid])
        return out

    def _follow(self, obj: _Object, cur: _Frame) -> tuple[np.ndarray, float] | None:
        """Evidence map (working size; > 0 = object) and confidence of a present object."""
        cfg = self.config
        warped = self.flow.warp(obj.prior)
        evidence = cfg.flow_confidence * (2 * warped - 1)
        if not cfg.correction:
            return evidence, 1.0
        rows, cols = cur.feats.shape[-2:]
        window = _window(warped > 0.05, cfg.search_margin, (rows, cols))
        if window is None:
            return None
        r0, r1, c0, c1 = window
        idx = (np.arange(r0, r1)[:, None] * cols + np.arange(c0, c1)[None, :]).ravel()
        _, logit = obj.appearance.scores(cur.cells[idx], self.scoring)
        logit_grid = np.zeros((rows, cols), np.float32)
        logit_grid[r0:r1, c0:c1] = logit.reshape(r1 - r0, c1 - c0)
        # Features remove freely (occluders, drift) but add only at a discount: next to a mask the coarse
        # cells still see the object and would grow it into its surroundings. An object much smaller than
        # when last stored is coming out from behind something: then it may grow fully.
        shrunk = cell_coverage(warped, (rows, cols)).sum() < cfg.regrow_below * obj.appearance.largest()
        if not shrunk:
            logit_grid = np.where(logit_grid > 0, cfg.feature_growth * logit_grid, logit_grid)
        evidence += _upsample(logit_grid, evidence.shape)
        return evidence, _mean_probability(logit_grid, evidence > 0)

    def _search(self, obj: _Object, cur: _Frame) -> tuple[np.ndarray, float] | None:
        """Evidence and confidence of an absent object found again anywhere, or None."""
        cfg = self.config
        if not (cfg.redetect and cfg.correction):
            return None
        rows, cols = cur.feats.shape[-2:]
        s_fg, logit = obj.appearance.scores(cur.cells, self.scoring)
        s_fg, logit = s_fg.reshape(rows, cols), logit.reshape(rows, cols)
        region = redetect(s_fg, logit, max(1.0, cfg.redetect_min_size * obj.area_cells), cfg.redetect_similarity)
        if region is None:
            return None
        grown = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        logit_grid = np.where(grown, logit, -cfg.flow_confidence).astype(np.float32)
        evidence = _upsample(logit_grid, (cur.gray.shape[0], cur.gray.shape[1]))
        return evidence, _mean_probability(logit_grid, evidence > 0)

    # -- teacher forcing and memory ---------------------------------------------------------------
    def accept(self, masks: dict[int, np.ndarray]) -> None:
        for oid, mask in masks.items():
            obj = self.objects[oid]
            obj.prior = self._to_work(mask)
            if obj.prior.max() >= 0.5 and self._current is not None:
                obj.area_cells = float(cell_coverage(obj.prior, self._current.feats.shape[-2:]).sum())
        if self._current is not None:
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
            if obj.prior.max() >= 0.5:
                obj.appearance.store(key, cur.cells, cell_coverage(obj.prior, cur.feats.shape[-2:]),
                                     self.config.fg_cells, self.config.bg_cells, self.scoring)

    def evict_memory(self, key: int) -> None:
        for obj in self.objects.values():
            obj.appearance.evict(key)

    def memory_keys(self) -> list[int]:
        return sorted({k for obj in self.objects.values() for k in obj.appearance.entries})

    def memory_bytes(self) -> int:
        return sum(obj.appearance.nbytes() for obj in self.objects.values())


def _window(mask: np.ndarray, margin: float, grid: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Cell rows/cols (r0, r1, c0, c1) around ``mask`` (working size) expanded by ``margin``."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    h, w = mask.shape
    rows, cols = grid
    y0, y1, x0, x1 = ys.min() * rows / h, (ys.max() + 1) * rows / h, xs.min() * cols / w, (xs.max() + 1) * cols / w
    dy, dx = max(1.0, margin * (y1 - y0)), max(1.0, margin * (x1 - x0))
    return (max(0, int(y0 - dy)), min(rows, int(np.ceil(y1 + dy))),
            max(0, int(x0 - dx)), min(cols, int(np.ceil(x1 + dx))))


def _upsample(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _mean_probability(logit_grid: np.ndarray, mask: np.ndarray) -> float:
    """Mean foreground probability over the cells ``mask`` (working size) covers at least half."""
    inside = cell_coverage(mask, logit_grid.shape) >= 0.5
    if not inside.any():
        inside = cell_coverage(mask, logit_grid.shape) > 0
    if not inside.any():
        return 0.0
    return float((1 / (1 + np.exp(-logit_grid[inside]))).mean())


def _strongest(evidence: dict[int, np.ndarray]) -> np.ndarray | None:
    """Per pixel, the id of the object with the highest evidence (overlaps go to the strongest)."""
    if not evidence:
        return None
    ids = np.array(list(evidence))
    return ids[np.argmax(np.stack(list(evidence.values())), axis=0)]


def build_cpu_tracker(config: CpuBackendConfig, core: HQSMemConfig) -> HQSMemTracker:
    return HQSMemTracker(CpuBackend(config), core, refiner=None)
