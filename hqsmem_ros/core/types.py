"""Plain data passed between the node, the tracker and the backends.

Frames are RGB ``uint8`` arrays of shape (H, W, 3); masks are ``bool`` arrays of shape (H, W);
boxes are ``(x0, y0, x1, y1)`` in pixels with exclusive upper bounds (so x1 - x0 is the width).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame as it passes through the tracker, the backend and the refiner. Every per-frame cache
    (the device copy, encoder features) keys on ``index``, never on the array, so a caller that refills
    one buffer in place cannot be served a stale result. The tracker's counter never goes back, reset
    included: one index, one image, for the lifetime of the models."""

    index: int
    pixels: np.ndarray  # RGB uint8, (H, W, 3)

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W)."""
        return self.pixels.shape[:2]


@dataclass(frozen=True)
class Target:
    """A request to start tracking object ``obj_id`` on the frame it is given with."""

    obj_id: int
    label: str = ""
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None


@dataclass
class Prediction:
    """What a base model or a refiner proposes for one object on one frame."""

    mask: np.ndarray
    confidence: float


@dataclass
class ObjectResult:
    obj_id: int
    label: str
    present: bool
    score: float
    mask: np.ndarray
    box: Box | None
    refined: bool = False
    position: Object3D | None = None  # 3D from an aligned depth image; None without depth input


@dataclass
class FrameResult:
    """The tracker's answer for one frame: exactly one per processed frame, even on a fault."""

    frame_index: int
    objects: list[ObjectResult]
    ok: bool = True
    status: str = "ok"
    memory_frames: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def mask_box(mask: np.ndarray) -> Box | None:
    """Tight box of a mask, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """A mask of ``shape`` that is True inside ``box``."""
    out = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = True
    return out


@dataclass(frozen=True)
class Object3D:
    """An object's 3D estimate from the depth under its mask, in the camera's optical frame (x right,
    y down, z forward), metres. ``valid`` is False when fewer than ``min_valid_pixels`` depth pixels
    were usable; centroid and extent are then zero."""

    centroid: tuple[float, float, float]
    extent: tuple[float, float, float]  # axis-aligned size (robust percentile span) along x, y, z
    pixels: int                         # valid depth pixels used
    valid: bool
