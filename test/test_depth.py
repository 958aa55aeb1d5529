"""core/depth.py and core/pairing.py on hand-made depth: projection, holes, boundary, bleeding, pairing."""

from __future__ import annotations

import numpy as np
import pytest

from hqsmem_ros.core.depth import (DepthConfig, Intrinsics, backproject, depth_metres, intrinsics_from_k,
                                   mean_point, nearest_mode, object_3d)
from hqsmem_ros.core.pairing import StampRing, nearest_stamp
from hqsmem_ros.core.targets import Rejection

INTR = Intrinsics(500.0, 520.0, 320.0, 240.0)
SHAPE = (480, 640)


def k_matrix(fx, fy, cx=320.0, cy=240.0):
    return [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]


def disk(cx, cy, r, shape=SHAPE):
    y, x = np.ogrid[:shape[0], :shape[1]]
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def test_intrinsics_come_from_k_and_bad_focal_lengths_are_refused():
    assert intrinsics_from_k(k_matrix(500, 520)) == INTR
    for k, why in [(k_matrix(0, 520), "positive"), (k_matrix(500, -1), "positive"),
                   (k_matrix(float("nan"), 520), "finite"), (k_matrix(500, float("inf")), "finite"),
                   ([500.0] * 4, "9")]:
        with pytest.raises(Rejection, match=why) as err:
            intrinsics_from_k(k)
        assert err.value.reason == "camera_info"


def test_depth_decoding_millimetres_metres_and_holes():
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    out = depth_metres(mm, "16UC1")
    assert out.dtype == np.float32 and np.isnan(out[0, 0])
    assert out[0, 1] == pytest.approx(1.0) and out[1, 0] == pytest.approx(2.5) and out[1, 1] == pytest.approx(65.535)
    m = np.array([[0.0, np.nan], [np.inf, 1.25], [-1.0, 3.0]], np.float32)
    out = depth_metres(m, "32FC1")
    assert np.isnan(out[:3, 0]).all() and np.isnan(out[0, 1]) and list(out[1:, 1]) == [1.25, 3.0]
    assert not np.isnan(m[1, 1])  # the input is not modified
    with pytest.raises(Rejection) as err:
        depth_metres(mm, "mono8")
    assert err.value.reason == "depth_encoding"


def test_backprojection_inverts_the_pinhole_projection():
    pts = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 5.0]])
    u = INTR.fx * pts[:, 0] / pts[:, 2] + INTR.cx
    v = INTR.fy * pts[:, 1] / pts[:, 2] + INTR.cy
    assert backproject(u, v, pts[:, 2], INTR) == pytest.approx(pts)


def plane(z):
    return np.full(SHAPE, z, np.float32)


def test_flat_object_gives_its_true_centroid_and_extent():
    mask = np.zeros(SHAPE, bool)
    mask[200:300, 400:500] = True  # 100 x 100 px square at 2 m
    obj = object_3d(plane(2.0), mask, INTR, DepthConfig(erosion_px=0, extent_percentile=0.0))
    assert obj.valid and obj.pixels == 10000
    u, v = 449.5, 249.5
    assert obj.centroid == pytest.approx(((u - 320) * 2 / 500, (v - 240) * 2 / 520, 2.0), abs=1e-5)
    assert obj.extent == pytest.approx((99 * 2 / 500, 99 * 2 / 520, 0.0), abs=1e-5)
    eroded = object_3d(plane(2.0), mask, INTR, DepthConfig(erosion_px=2))
    assert eroded.pixels == 96 * 96 and eroded.centroid == pytest.approx(obj.centroid, abs=1e-5)


def test_holes_are_ignored_and_too_few_valid_pixels_are_flagged():
    mask = disk(300, 200, 30)
    depth = plane(1.5)
    depth[::2] = np.nan  # every other row is a hole
    depth[1::4] = 0.0    # zeros from a 32FC1 driver that was not decoded: ignored too
    obj = object_3d(depth, mask, INTR)
    assert obj.valid and obj.centroid[2] == pytest.approx(1.5)
    depth[:] = np.nan
    depth[200, 290:300] = 1.5  # 10 valid pixels under the mask
    few = object_3d(depth, mask, INTR, DepthConfig(min_valid_pixels=20, erosion_px=0))
    assert not few.valid and few.pixels == 10 and few.centroid == (0.0, 0.0, 0.0) and few.extent == (0.0, 0.0, 0.0)
    assert not object_3d(depth, np.zeros(SHAPE, bool), INTR).valid


def test_boundary_pixels_are_eroded_away_but_tiny_masks_keep_theirs():
    mask = disk(300, 200, 40)
    inner = disk(300, 200, 36)
    depth = plane(3.0)
    depth[mask & ~inner] = 6.0  # a boundary ring carrying the background's depth
    got = object_3d(depth, mask, INTR, DepthConfig(erosion_px=4, mode_min_share=0.01))
    assert got.centroid[2] == pytest.approx(3.0)
    tiny = disk(100, 100, 2)  # 13 px: eroding 4 px would leave nothing
    small = object_3d(plane(3.0), tiny, INTR, DepthConfig(erosion_px=4, min_valid_pixels=5))
    assert small.valid and small.pixels == tiny.sum()


def test_background_bleeding_through_the_mask_is_rejected():
    # the mask (a bad segmentation) covers the object at ~2 m and a chunk of the wall behind it at 4 m
    y, x = np.mgrid[:SHAPE[0], :SHAPE[1]]
    depth = (4.0 + 0.001 * (y - 240)).astype(np.float32)  # tilted wall
    obj = disk(300, 240, 50)
    depth[obj] = (2.0 - 0.05 * (1 - ((x[obj] - 300) ** 2 + (y[obj] - 240) ** 2) / 50 ** 2))  # a rounded surface
    mask = obj | disk(300, 320, 45)
    truth = mean_point(depth, obj, INTR)
    naive = mean_point(depth, mask, INTR)
    got = object_3d(depth, mask, INTR)
    assert np.linalg.norm(naive - truth) > 0.5  # the plain mean is dragged far behind the object
    assert np.linalg.norm(np.subtract(got.centroid, truth)) < 0.01
    assert got.extent[2] < 0.1  # the wall is not in the extent either


def test_nearest_substantial_mode_skips_a_few_near_outliers():
    rng = np.random.default_rng(0)
    z = np.r_[np.full(5, 0.5), rng.normal(2.0, 0.01, 500), rng.normal(4.0, 0.01, 800)]
    keep = nearest_mode(z, 0.01, 0.2)
    assert keep[5:505].all() and not keep[:5].any() and not keep[505:].any()
    assert nearest_mode(np.linspace(1, 10, 50), 0.01, 0.5).all()  # no mode holds half: keep everything


def test_pairing_exact_nearest_within_tolerance_and_none():
    assert nearest_stamp(100, [90, 100, 105], 0.0) == 100
    assert nearest_stamp(100, [], 1.0) is None
    ms = 1_000_000
    ring = StampRing[str](3)
    for k, stamp in enumerate([0, 33 * ms, 66 * ms, 100 * ms]):  # the first one falls out of the ring
        ring.add(stamp, f"d{k}")
    assert len(ring) == 3
    assert ring.pair(66 * ms, 0.0) == "d2"                 # exact
    assert ring.pair(70 * ms, 0.005) == "d2"               # nearest within tolerance
    assert ring.pair(83 * ms, 0.02) == "d2"                # a tie (17 ms both ways) takes the earlier
    assert ring.pair(84 * ms, 0.02) == "d3"
    assert ring.pair(50 * ms, 0.01) is None                # 16 ms from the nearest: too far
    assert ring.pair(0, 0.02) is None                      # that depth frame left the ring
    ring.add(100 * ms, "again")
    assert len(ring) == 3 and ring.pair(100 * ms, 0.0) == "again"
    ring.clear()
    assert ring.pair(100 * ms, 1.0) is None
