"""Carrying masks from frame to frame with dense optical flow (OpenCV DIS).

Flow is smoothed across object boundaries, so a pixel-wise warp makes a moving mask lag a little every
frame (measured: ~1 px per frame at 4 px/frame motion, compounding). The default ``similarity`` model
therefore fits one rotation + scale + translation per object, with RANSAC, to the forward flow of the
mask's interior (where the flow is the object's own), and moves the whole mask with it: no lag. The flow
is computed at the working size but the mask is moved at full resolution, so a mask carried for
thousands of frames is never resampled at the coarser working size. ``dense``
keeps the pixel-wise backward warp (for non-rigid motion).
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

    def warp(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` (any resolution, previous frame) moved onto the current frame, as float32 in [0, 1] at
        the mask's own resolution: the motion is measured at the flow's size and applied at full size,
        so carrying a mask for many frames does not blur or round it."""
        soft = mask.astype(np.float32)
        if self.forward is None:
            return soft
        h, w = soft.shape
        fh, fw = self.forward.shape[:2]
        scale = np.array([w / fw, h / fh], np.float32)
        if self.model == "dense":
            return self._dense(soft, scale)
        small = cv2.resize(soft, (fw, fh), interpolation=cv2.INTER_AREA)
        motion = self._fit(small >= 0.5)
        to_full = np.diag(scale.astype(np.float64))  # flow-size pixels -> full-size pixels, per axis
        motion = np.hstack([to_full @ motion[:, :2] @ np.linalg.inv(to_full), to_full @ motion[:, 2:]])
        return cv2.warpAffine(soft, motion, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)

    def _fit(self, mask: np.ndarray) -> np.ndarray:
        """2x3 similarity transform previous -> current of the region ``mask`` (flow size)."""
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

    def _dense(self, soft: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Pixel-wise backward warp: each current pixel samples the previous mask where it came from
        (the forward flow, read at the pixel itself, approximates the backward one)."""
        h, w = soft.shape
        flow = cv2.resize(self.forward, (w, h), interpolation=cv2.INTER_LINEAR) * scale
        grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
        return cv2.remap(soft, grid - flow, None, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
