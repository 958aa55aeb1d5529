"""Segmentation and tracking measures: J (region IoU), F (DAVIS boundary F-measure), and the VOTS
measures of hqsmem-method.md. Masks are bool arrays; an absent object is an all-False mask."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J; 1.0 when both masks are empty (the DAVIS convention)."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary: pixels that differ from their right, lower or lower-right neighbour
    (DAVIS ``seg2bmap`` at the mask's own resolution)."""
    m = mask.astype(bool)
    right = np.zeros_like(m)
    below = np.zeros_like(m)
    diag = np.zeros_like(m)
    right[:, :-1] = m[:, 1:]
    below[:-1, :] = m[1:, :]
    diag[:-1, :-1] = m[1:, 1:]
    b = (m ^ right) | (m ^ below) | (m ^ diag)
    b[-1, :] = m[-1, :] ^ right[-1, :]
    b[:, -1] = m[:, -1] ^ below[:, -1]
    b[-1, -1] = False
    return b


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Boundary F-measure (DAVIS): boundaries match within ``bound_th`` of the image diagonal."""
    radius = bound_th if bound_th >= 1 else int(np.ceil(bound_th * np.hypot(*gt.shape)))
    pb, gb = boundary_map(pred), boundary_map(gt)
    n_p, n_g = pb.sum(), gb.sum()
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    disk = _disk(radius)
    precision = (pb & ndimage.binary_dilation(gb, disk)).sum() / n_p
    recall = (gb & ndimage.binary_dilation(pb, disk)).sum() / n_g
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r
