"""J, F and the VOTS measures against hand-computed values and an independent brute-force F."""

import math

import numpy as np
import pytest

from hqsmem_ros.core.metrics import boundary_f, boundary_map, jaccard, vots_measures


def box(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_jaccard_hand_computed():
    a = box((8, 8), 0, 2, 0, 2)          # 4 px
    b = box((8, 8), 0, 2, 1, 4)          # 6 px, 2 shared -> union 8
    assert jaccard(a, b) == pytest.approx(2 / 8)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, box((8, 8), 5, 6, 5, 6)) == 0.0
    empty = np.zeros((8, 8), bool)
    assert jaccard(empty, empty) == 1.0  # DAVIS: both empty is a perfect answer
    assert jaccard(a, empty) == 0.0


def brute_boundary(m):
    """A pixel is on the boundary when it differs from an in-image right, lower or lower-right neighbour."""
    h, w = m.shape
    out = np.zeros_like(m)
    for y in range(h):
        for x in range(w):
            out[y, x] = any(m[y, x] != m[y + dy, x + dx] for dy, dx in ((0, 1), (1, 0), (1, 1))
                            if y + dy < h and x + dx < w)
    return out


def brute_f(pred, gt, radius):
    """Each boundary pixel is matched if some boundary pixel of the other mask is within `radius`."""
    pb, gb = np.argwhere(brute_boundary(pred)), np.argwhere(brute_boundary(gt))
    if len(pb) == 0 and len(gb) == 0:
        return 1.0
    if len(pb) == 0 or len(gb) == 0:
        return 0.0
    d = np.sqrt(((pb[:, None, :] - gb[None, :, :]) ** 2).sum(-1))
    precision = (d.min(axis=1) <= radius).mean()
    recall = (d.min(axis=0) <= radius).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_boundary_map_of_a_pixel_is_its_upper_left_2x2():
    m = box((6, 6), 2, 3, 2, 3)
    assert np.array_equal(np.argwhere(boundary_map(m)), [[1, 1], [1, 2], [2, 1], [2, 2]])


def test_boundary_f_hand_computed():
    # Single pixels two columns apart: boundaries are 2x2 blocks at cols 1-2 and 3-4; within 1 px
    # half of each block matches -> P = R = 0.5.
    a, b = box((6, 6), 2, 3, 2, 3), box((6, 6), 2, 3, 4, 5)
    assert boundary_f(a, b, bound_th=1) == pytest.approx(0.5)
    assert boundary_f(a, b, bound_th=2) == pytest.approx(1.0)
    empty = np.zeros((6, 6), bool)
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(a, empty) == 0.0 and boundary_f(empty, a) == 0.0


@pytest.mark.parametrize("seed", range(12))
def test_boundary_f_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(10, 40)), int(rng.integers(10, 40)))
    masks = []
    for _ in range(2):  # blobs: a few random rectangles, sometimes touching the image border
        m = np.zeros(shape, bool)
        for _ in range(int(rng.integers(1, 4))):
            y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
            m[y0:y0 + rng.integers(1, 15), x0:x0 + rng.integers(1, 15)] = True
        masks.append(m)
    pred, gt = masks
    for th in (1, 3, 0.008, 0.05):
        radius = th if th >= 1 else math.ceil(th * math.hypot(*shape))
        assert boundary_f(pred, gt, th) == pytest.approx(brute_f(pred, gt, radius)), (seed, th)


def test_vots_measures_hand_computed():
    iou = [0.8, 0.5, 0.7, 0.0, 0.0, 0.0]  # frame 2's overlap must not count: reported absent
    visible = [True, True, True, True, False, False]
    reported = [True, True, False, True, False, True]
    v = vots_measures(iou, visible, reported)
    assert v.quality == pytest.approx((0.8 + 0.5 + 0 + 0 + 1 + 0) / 6)
    assert v.accuracy == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert v.robustness == pytest.approx(2 / 4)
    assert v.nre == pytest.approx(1 / 4)
    assert v.dre == pytest.approx(1 / 4)
    assert v.adq == pytest.approx(1 / 2)
    assert v.robustness + v.nre + v.dre == pytest.approx(1.0)


def test_vots_measures_undefined_parts_are_nan():
    v = vots_measures([1.0, 1.0], [True, True], [True, True])
    assert (v.quality, v.accuracy, v.robustness, v.nre, v.dre) == (1.0, 1.0, 1.0, 0.0, 0.0)
    assert math.isnan(v.adq)
    never_visible = vots_measures([0.0, 0.0], [False, False], [False, True])
    assert never_visible.quality == 0.5 and never_visible.adq == 0.5
    assert math.isnan(never_visible.accuracy) and math.isnan(never_visible.robustness)
