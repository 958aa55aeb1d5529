"""3D from an aligned depth image: pinhole intrinsics, depth decoding, and each object's robust centroid and
extent from the depth pixels under its mask (camera optical frame: x right, y down, z forward, metres).

The estimate drops the mask's boundary (erosion: a segmentation's edge pixels often carry the background's
depth), holes (0 / NaN) and background bleeding through the mask: valid depths are binned in log-depth (a bin
is a fixed fraction of the depth, like a sensor's noise) and only the nearest mode that holds a substantial
share of the pixels is kept. Everything runs on the mask's bounding box only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from .config import param
from .targets import Rejection
from .types import Object3D, mask_box

DEPTH_ENCODINGS = ("16UC1", "32FC1")  # millimetres (RealSense/OpenNI raw) or metres
_NOISE_SHARE = 0.01  # a histogram bin with fewer than this share of the pixels is noise (flying pixels), a gap
_EXTENT_SAMPLES = 8192


@dataclass(frozen=True)
class DepthConfig:
    enabled: bool = param(False, "Subscribe to `depth` (aligned to the colour camera; 16UC1 mm or 32FC1 m) and "
                          "`camera_info`, and publish each present object's 3D centroid and extent")
    pairing_tolerance_s: float = param(0.02, "A colour frame pairs with the depth frame of the same stamp, else "
                                       "the nearest one at most this far (s); none: no 3D for that frame",
                                       min=0.0, max=1.0)
    ring_size: int = param(8, "Depth frames held for pairing by stamp", min=1, max=100)
    min_valid_pixels: int = param(20, "Fewer valid depth pixels under a mask than this: no 3D for that object",
                                  min=1, max=1000000)
    erosion_px: int = param(2, "Pixels eroded off the mask's boundary before reading depth (a mask smaller than "
                            "that keeps its boundary)", min=0, max=50)
    mode_bin: float = param(0.01, "Depth histogram bin as a fraction of depth, for finding the nearest depth "
                            "mode (background bleeding through the mask is dropped)", min=0.001, max=0.5)
    mode_min_share: float = param(0.2, "The nearest depth mode holding at least this share of the valid pixels "
                                  "is the object", min=0.01, max=1.0)
    extent_percentile: float = param(5.0, "Extent spans this percentile to 100 minus it, per axis",
                                     min=0.0, max=49.0)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the (rectified) camera, pixels; (u, v) = (column, row) of a pixel centre."""

    fx: float
    fy: float
    cx: float
    cy: float


def intrinsics_from_k(k: Sequence[float]) -> Intrinsics:
    """Intrinsics from a CameraInfo's row-major 3x3 K; ``camera_info`` Rejection when it cannot project."""
    k = np.asarray(k, float).reshape(-1)
    if k.size != 9:
        raise Rejection("camera_info", f"K has {k.size} values, expected 9")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if not np.isfinite([fx, fy, cx, cy]).all():
        raise Rejection("camera_info", f"K is not finite (fx={fx}, fy={fy}, cx={cx}, cy={cy})")
    if fx <= 0 or fy <= 0:
        raise Rejection("camera_info", f"focal length must be positive (fx={fx}, fy={fy}): uncalibrated camera?")
    return Intrinsics(float(fx), float(fy), float(cx), float(cy))


def depth_metres(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """float32 metres from 16UC1 millimetres or 32FC1 metres; holes (0, NaN, inf, negative) become NaN."""
    if encoding == "16UC1":
        out = pixels.astype(np.float32) * np.float32(0.001)
    elif encoding == "32FC1":
        out = pixels.astype(np.float32, copy=True)
    else:
        raise Rejection("depth_encoding", f"depth encoding '{encoding}' is not one of {', '.join(DEPTH_ENCODINGS)}")
    out[~(out > 0) | ~np.isfinite(out)] = np.nan
    return out


def backproject(us: np.ndarray, vs: np.ndarray, z: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """(N, 3) points of pixel columns ``us``, rows ``vs`` at depths ``z``."""
    return np.stack([(us - intr.cx) * z / intr.fx, (vs - intr.cy) * z / intr.fy, z], axis=1)


def mean_point(depth: np.ndarray, mask: np.ndarray, intr: Intrinsics) -> np.ndarray | None:
    """Plain mean of the back-projected valid depth under ``mask`` (ground truth on exact depth), or None."""
    vs, us = np.nonzero(mask & np.isfinite(depth))
    if vs.size == 0:
        return None
    return backproject(us.astype(np.float64), vs.astype(np.float64), depth[vs, us].astype(np.float64), intr).mean(0)


def nearest_mode(z: np.ndarray, bin_frac: float, min_share: float) -> np.ndarray:
    """Boolean selection of ``z`` (positive depths) in the nearest histogram mode with at least ``min_share``
    of the values; all True when no mode is that large (no clear structure to trust)."""
    bins = np.floor(np.log(z) / math.log1p(bin_frac)).astype(np.int64)
    bins -= bins.min()
    counts = np.bincount(bins)
    occupied = np.flatnonzero(counts >= max(1.0, _NOISE_SHARE * z.size))
    if occupied.size == 0:
        return np.ones(z.size, bool)
    # modes: runs of occupied bins, a single empty bin between two does not split them
    breaks = np.flatnonzero(np.diff(occupied) > 2)
    starts = occupied[np.r_[0, breaks + 1]]
    ends = occupied[np.r_[breaks, occupied.size - 1]]
    cumulative = np.r_[0, np.cumsum(counts)]
    mass = cumulative[ends + 1] - cumulative[starts]
    big = np.flatnonzero(mass >= min_share * z.size)
    if big.size == 0:
        return np.ones(z.size, bool)
    return (bins >= starts[big[0]] - 1) & (bins <= ends[big[0]] + 1)  # with the sparse bins at its edges


def _no_3d(pixels: int) -> Object3D:
    return Object3D((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), pixels, False)


def object_3d(depth: np.ndarray, mask: np.ndarray, intr: Intrinsics, config: DepthConfig = DepthConfig()
              ) -> Object3D:
    """Robust 3D centroid (mean of the kept points) and percentile extent of the object under ``mask``.

    ``depth`` is float32 metres with NaN holes (``depth_metres``), the mask's shape."""
    box = mask_box(mask)
    if box is None:
        return _no_3d(0)
    x0, y0, x1, y1 = box
    crop = mask[y0:y1, x0:x1]
    if config.erosion_px:
        kernel = np.ones((2 * config.erosion_px + 1,) * 2, np.uint8)
        # outside the tight box is background: a constant 0 border erodes the box's edges too
        eroded = cv2.erode(crop.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        if np.count_nonzero(eroded) >= config.min_valid_pixels:
            crop = eroded.view(bool)
    zcrop = depth[y0:y1, x0:x1]
    vs, us = np.nonzero(crop & (zcrop > 0))  # NaN compares False: holes drop out here
    if vs.size < config.min_valid_pixels:
        return _no_3d(int(vs.size))
    z = zcrop[vs, us]
    keep = nearest_mode(z, config.mode_bin, config.mode_min_share)
    n = int(np.count_nonzero(keep))
    if n < config.min_valid_pixels:
        return _no_3d(n)
    z = z[keep]
    # one contiguous array per axis: column reductions over an (N, 3) array are several times slower
    axes = ((us[keep] + (x0 - intr.cx)) * z / intr.fx, (vs[keep] + (y0 - intr.cy)) * z / intr.fy, z)
    q = (config.extent_percentile, 100 - config.extent_percentile)
    # percentiles of an even subsample of at least _EXTENT_SAMPLES points: within a fraction of a percentile of
    # the full set's, at a bounded cost for a large object
    sub = slice(None, None, max(1, n // _EXTENT_SAMPLES))
    extent = tuple(float(np.subtract(*np.percentile(a[sub], q)[::-1])) for a in axes)
    return Object3D(tuple(float(a.mean(dtype=np.float64)) for a in axes), extent, n, True)
