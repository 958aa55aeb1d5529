"""Segmentation and tracking measures: J (region IoU), F (DAVIS boundary F-measure), and the VOTS
measures of docs/method.md §5. Masks are bool arrays; an absent object is an all-False mask.

J and F follow the davis2017-evaluation toolkit (``db_eval_iou``, ``f_measure`` with ``_seg2bmap``);
the VOTS measures are the simplified per-target ones of docs/method.md (eqs. 22-23; the official
``vot-toolkit`` remains the reference for published numbers)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

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
    """Boundary F-measure (DAVIS): boundaries match within ``bound_th`` of the image diagonal
    (or within ``bound_th`` pixels when it is >= 1)."""
    radius = int(bound_th) if bound_th >= 1 else int(np.ceil(bound_th * np.hypot(*gt.shape)))
    pb, gb = boundary_map(pred), boundary_map(gt)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    # Dilation only reaches `radius` pixels from a boundary: work in the boundaries' box, padded.
    rows = np.flatnonzero((pb | gb).any(axis=1))
    cols = np.flatnonzero((pb | gb).any(axis=0))
    window = (slice(max(rows[0] - radius, 0), rows[-1] + radius + 1),
              slice(max(cols[0] - radius, 0), cols[-1] + radius + 1))
    pb, gb = pb[window], gb[window]
    disk = _disk(radius)
    precision = (pb & ndimage.binary_dilation(gb, disk)).sum() / n_p
    recall = (gb & ndimage.binary_dilation(pb, disk)).sum() / n_g
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def _disk(r: int) -> np.ndarray:
    """skimage.morphology.disk(r), the structuring element the DAVIS toolkit dilates with."""
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


@dataclass(frozen=True)
class VotsMeasures:
    """Per-target VOTS measures; NaN where a measure has no frame to be computed on (e.g. ADQ for a
    target that is never absent)."""

    quality: float      # Q: overlap on visible frames, 1/0 for (not) reporting absence on absent frames
    accuracy: float     # Acc: mean IoU over frames visible in ground truth and reported present
    robustness: float   # Rob: share of visible frames with IoU > 0
    nre: float          # share of visible frames reported absent (not-reported error)
    dre: float          # share of visible frames reported present with IoU = 0 (drift-rate error)
    adq: float          # share of absent frames reported absent (absence-detection quality)


def vots_measures(overlaps: Sequence[float], gt_visible: Sequence[bool],
                  reported: Sequence[bool]) -> VotsMeasures:
    """VOTS measures of one target from its per-frame IoU, ground-truth visibility and the tracker's
    presence report (all over the same scored frames)."""
    iou = np.asarray(overlaps, float)
    vis = np.asarray(gt_visible, bool)
    rep = np.asarray(reported, bool)
    iou = np.where(rep, iou, 0.0)  # an object reported absent overlaps nothing
    per_frame = np.where(vis, iou, (~rep).astype(float))
    both = vis & rep
    return VotsMeasures(
        quality=_mean(per_frame),
        accuracy=_mean(iou[both]),
        robustness=_mean(iou[vis] > 0),
        nre=_mean(~rep[vis]),
        dre=_mean(rep[vis] & (iou[vis] == 0)),
        adq=_mean(~rep[~vis]),
    )


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if np.size(values) else math.nan
