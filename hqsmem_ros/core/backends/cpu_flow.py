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
        self._cells: np.ndarray | None = None   # the same per feature cell (``cell_flow``)

    def update(self, previous: np.ndarray | None, current: np.ndarray) -> None:
        """Flow between two grey frames of one size; with no previous frame nothing moves."""
        if previous is None or previous.shape != current.shape:
            self.forward = None
            return
        self.forward = self.dis.calc(previous, current, None)
        self._cells = None

    def warp(self, mask: np.ndarray, box: tuple[int, int, int, int], ignore: np.ndarray | None = None,
             shift: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray | None]:
        """``mask`` (full resolution, previous frame) moved onto the current frame: float32 values in [0, 1]
        over the returned box (y0, y1, x0, x1) of the frame, zero outside it. ``box`` is the mask's own box
        (y0, y1, x0, x1). The motion is measured at the flow's size and applied at full size, so carrying a
        mask for many frames does not blur or round it; and only the object's box is touched, so the cost
        is bounded by its size, not the frame's. ``ignore``: flow-size pixels whose flow is not the object's
        (a look-alike over it), left out of the fit; when they cover all of it, it stays in place. ``shift``:
        move it by this (x, y, full-size pixels) instead of fitting its flow. Also returned: how far the motion
        moved the box's centre (None for ``dense``)."""
        h, w = mask.shape
        y0, y1, x0, x1 = max(box[0] - 2, 0), min(box[1] + 2, h), max(box[2] - 2, 0), min(box[3] + 2, w)
        soft = mask[y0:y1, x0:x1].astype(np.float32)  # with a ring of zeros for the interpolation
        if self.forward is None:
            return soft, (y0, y1, x0, x1), np.zeros(2)
        fh, fw = self.forward.shape[:2]
        scale = np.array([w / fw, h / fh], np.float32)
        if self.model == "dense":
            return self._dense(mask.astype(np.float32), scale), (0, h, 0, w), None
        if shift is None:
            motion = self._fit(mask, (y0, y1, x0, x1), ignore)
            to_full = np.diag(scale.astype(np.float64))  # flow-size pixels -> full-size pixels, per axis
            motion = np.hstack([to_full @ motion[:, :2] @ np.linalg.inv(to_full), to_full @ motion[:, 2:]])
        else:
            motion = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        moved_by = motion[:, :2] @ centre + motion[:, 2] - centre
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ motion.T
        dx0, dy0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
        dx1, dy1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, (w, h))
        if dx1 <= dx0 or dy1 <= dy0:  # moved out of the frame
            return np.zeros((0, 0), np.float32), (0, 0, 0, 0), moved_by
        local = motion.copy()  # crop coordinates in, destination-box coordinates out
        local[:, 2] = motion[:, :2] @ (x0, y0) + motion[:, 2] - (dx0, dy0)
        moved = cv2.warpAffine(soft, local, (int(dx1 - dx0), int(dy1 - dy0)), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return moved, (int(dy0), int(dy1), int(dx0), int(dx1)), moved_by

    def _fit(self, mask: np.ndarray, box: tuple[int, int, int, int], ignore: np.ndarray | None) -> np.ndarray:
        """2x3 similarity transform previous -> current (flow-size pixels) of the object ``mask`` (full size)
        inside ``box``, fitted to the flow of the flow-size pixels whose centres fall in its interior."""
        h, w = mask.shape
        fh, fw = self.forward.shape[:2]
        y0, y1, x0, x1 = box
        fy = np.arange(int(y0 * fh / h), min(fh, int(np.ceil(y1 * fh / h)) + 1))
        fx = np.arange(int(x0 * fw / w), min(fw, int(np.ceil(x1 * fw / w)) + 1))
        py = np.clip(((fy + 0.5) * h / fh).astype(int), 0, h - 1)  # the full-size pixel at each centre
        px = np.clip(((fx + 0.5) * w / fw).astype(int), 0, w - 1)
        r = max(1, round(_INTERIOR * w / fw))
        crop = mask[y0:y1, x0:x1].astype(np.uint8)
        core = np.zeros_like(mask, dtype=bool)
        core[y0:y1, x0:x1] = cv2.erode(crop, np.ones((2 * r + 1,) * 2, np.uint8)) > 0
        inside = core[py[:, None], px[None, :]]
        if inside.sum() < 12:
            inside = mask[py[:, None], px[None, :]]
        if ignore is not None:
            inside &= ~ignore[fy[:, None], fx[None, :]]
        iy, ix = np.nonzero(inside)
        ys, xs = fy[iy], fx[ix]
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

    def cell_flow(self, grid: tuple[int, int]) -> np.ndarray:
        """The flow (rows, cols, 2) averaged over each cell of a ``grid`` over the frame, in cells per frame."""
        rows, cols = grid
        if self.forward is None:
            return np.zeros((rows, cols, 2), np.float32)
        if self._cells is None or self._cells.shape[:2] != (rows, cols):
            fh, fw = self.forward.shape[:2]
            self._cells = cv2.resize(self.forward, (cols, rows), interpolation=cv2.INTER_AREA) / np.array(
                [fw / cols, fh / rows], np.float32)
        return self._cells

    def move_cells(self, grid: np.ndarray) -> np.ndarray:
        """A (rows, cols) grid over the previous frame's feature cells moved onto the current frame, cell by
        cell with the flow at each cell (the dense warp's approximation, at cell size)."""
        if self.forward is None:
            return grid
        rows, cols = grid.shape
        at = np.dstack(np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32)))
        return cv2.remap(grid.astype(np.float32), at - self.cell_flow(grid.shape), None,
                         interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def _dense(self, soft: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Pixel-wise backward warp: each current pixel samples the previous mask where it came from
        (the forward flow, read at the pixel itself, approximates the backward one)."""
        h, w = soft.shape
        flow = cv2.resize(self.forward, (w, h), interpolation=cv2.INTER_LINEAR) * scale
        grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
        return cv2.remap(soft, grid - flow, None, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
