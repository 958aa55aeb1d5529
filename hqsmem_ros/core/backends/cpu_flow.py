"""Carrying masks from frame to frame with dense optical flow (OpenCV DIS).

Flow is smoothed across object boundaries, so a pixel-wise warp makes a moving mask lag a little every
frame (measured: ~1 px per frame at 4 px/frame motion, compounding). The default ``similarity`` model
therefore fits one rotation + scale + translation per object, with RANSAC, to the forward flow of the
mask's interior (where the flow is the object's own), and moves the whole soft mask with it: no lag, no
erosion. ``dense`` keeps the pixel-wise backward warp (for non-rigid motion).
"""

from __future__ import annotations

import cv2
import numpy as np

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
MOTION_MODELS = ("similarity", "dense")
_INTERIOR = 2      # pixels trimmed off a mask before its flow is trusted
_MAX_POINTS = 400  # flow samples per object for the motion fit


class FlowWarper:
    def __init__(self, preset: str, finest_scale: int, model: str):
        self.dis = cv2.DISOpticalFlow_create(PRESETS[preset])
        self.dis.setFinestScale(finest_scale)  # the presets stop at 1/4 size, which underestimates motion
        self.model = model
        self.forward: np.ndarray | None = None  # (H, W, 2) previous -> current; None: nothing moves

    def update(self, previous: np.ndarray | None, current: np.ndarray) -> None:
        """Flow between two grey frames of one size; with no previous frame nothing moves."""
        if previous is None or previous.shape != current.shape:
            self.forward = None
            return
        self.forward = self.dis.calc(previous, current, None)

    def warp(self, soft_mask: np.ndarray) -> np.ndarray:
        """``soft_mask`` (float32, previous frame) moved onto the current frame."""
        if self.forward is None:
            return soft_mask
        if self.model == "dense":
            return self._dense(soft_mask)
        h, w = soft_mask.shape
        motion = self._fit(soft_mask >= 0.5)
        return cv2.warpAffine(soft_mask, motion, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def _fit(self, mask: np.ndarray) -> np.ndarray:
        """2x3 similarity transform previous -> current of the region ``mask``."""
        core = cv2.erode(mask.astype(np.uint8), np.ones((2 * _INTERIOR + 1,) * 2, np.uint8)) > 0
        ys, xs = np.nonzero(core if core.sum() >= 12 else mask)
        if ys.size > _MAX_POINTS:
            keep = np.linspace(0, ys.size - 1, _MAX_POINTS).round().astype(int)
            ys, xs = ys[keep], xs[keep]
        src = np.stack([xs, ys], 1).astype(np.float32)
        dst = src + self.forward[ys, xs]
        if ys.size >= 6:
            motion, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0)
            if motion is not None:
                return motion
        shift = np.median(dst - src, axis=0) if ys.size else np.zeros(2, np.float32)
        return np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float64)

    def _dense(self, soft_mask: np.ndarray) -> np.ndarray:
        """Pixel-wise backward warp: each current pixel samples the previous mask where it came from
        (the forward flow, read at the pixel itself, approximates the backward one)."""
        h, w = soft_mask.shape
        grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
        return cv2.remap(soft_mask, grid - self.forward, None, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
