"""Turning a box-only target into an initial mask (the tracker's ``box_to_mask``).

The CPU backend uses OpenCV's GrabCut inside the box (:func:`grabcut_box_init`): no model, a few tens of
milliseconds on a CPU at tracking resolution. The GPU pipeline with SAM-HQ (``hqsmem.sam_hq``) uses
:class:`BoxPromptInit`: SAM-HQ prompted with the box itself, its first (best) mask, as the method starts an
object from a box; without SAM-HQ it uses GrabCut too (the factory decides).
"""

from __future__ import annotations

import cv2
import numpy as np

from .refine import Proposer
from .types import Box, Frame, box_mask

_MAX_SIDE = 320  # GrabCut is O(pixels): segment a downscaled crop


def grabcut(*args) -> None:
    """``cv2.grabCut`` from a fixed seed. Its k-means starts from OpenCV's per-thread RNG, whose state
    depends on what ran before in that thread: seeded, one input gives one mask in any thread (the node's
    worker, the offline runner, a benchmark)."""
    cv2.setRNGSeed(0)
    cv2.grabCut(*args)


def grabcut_mask(frame: np.ndarray, box: Box, iterations: int = 4) -> np.ndarray:
    """Foreground mask inside ``box``; falls back to the filled box if GrabCut finds nothing."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = box
    out = np.zeros((h, w), bool)
    if x1 - x0 < 4 or y1 - y0 < 4:
        out[y0:y1, x0:x1] = True
        return out
    # Context around the box gives GrabCut background samples.
    pad = max(4, int(0.25 * max(x1 - x0, y1 - y0)))
    cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    crop = frame[cy0:cy1, cx0:cx1]
    scale = min(1.0, _MAX_SIDE / max(crop.shape[:2]))
    small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else crop
    rect = (int((x0 - cx0) * scale), int((y0 - cy0) * scale),
            max(1, int((x1 - x0) * scale)), max(1, int((y1 - y0) * scale)))
    gc = np.zeros(small.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        grabcut(np.ascontiguousarray(small[..., ::-1]), gc, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        out[y0:y1, x0:x1] = True
        return out
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1:
        fg = cv2.resize(fg, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST)
    crop_mask = fg.astype(bool)
    crop_mask &= box_mask(crop_mask.shape, (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0))
    if crop_mask.sum() < 0.05 * (x1 - x0) * (y1 - y0):
        out[y0:y1, x0:x1] = True
        return out
    out[cy0:cy1, cx0:cx1] = crop_mask
    return out


def grabcut_box_init(frame: Frame, box: Box) -> np.ndarray:
    return grabcut_mask(frame.pixels, box)


class BoxPromptInit:
    """The proposer's first mask for the box (SAM-HQ's HQ mask, its best); the filled box when it
    proposes nothing. There is no base mask yet to verify a proposal against, so none is verified."""

    def __init__(self, proposer: Proposer):
        self.proposer = proposer

    def __call__(self, frame: Frame, box: Box) -> np.ndarray:
        candidates = self.proposer.propose(frame, {0: box})[0]
        return candidates[0] if candidates else box_mask(frame.hw, box)
