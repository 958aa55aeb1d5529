"""The varied scenes: determinism, exact ground truth, the train/fresh split, and that each kind shows what
it claims; and the benchmark's baselines and box IoU."""

from __future__ import annotations

import numpy as np
import pytest

from hqsmem_ros.core.scenes import FRESH_SEEDS, SCENE_KINDS, SPLITS, TRAIN_SEEDS, Layer, Scene, make_scene
from hqsmem_ros.core.sequences import Sprite
from hqsmem_ros.core.types import mask_box
from hqsmem_ros.tools import benchmark_cpu

SIZE = (240, 320)


def test_the_split_exists_and_is_disjoint():
    assert TRAIN_SEEDS and FRESH_SEEDS
    assert not set(TRAIN_SEEDS) & set(FRESH_SEEDS)
    assert SPLITS == {"train": TRAIN_SEEDS, "fresh": FRESH_SEEDS}
    # the benchmark offers exactly these splits
    with pytest.raises(SystemExit):
        benchmark_cpu.main(["--split", "all"])


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_frames_masks_and_targets(kind):
    scene = make_scene(kind, TRAIN_SEEDS[0], n_frames=6, size=SIZE)
    assert len(scene) == 6 and scene.object_ids == list(range(1, len(scene.object_ids) + 1))
    image, masks = scene.frame(5)
    assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
    assert set(masks) == set(scene.object_ids) and all(m.shape == SIZE and m.dtype == bool for m in masks.values())
    assert not (np.stack(list(masks.values())).sum(axis=0) > 1).any(), "ground-truth masks overlap"
    for target in scene.targets():
        assert target.box == tuple(float(v) for v in mask_box(target.mask))


def test_deterministic_given_seed_and_varied_across_seeds():
    a, b = make_scene("fast_motion", 3, 12, SIZE), make_scene("fast_motion", 3, 12, SIZE)
    (ia, ma), (ib, mb) = a.frame(11), b.frame(11)
    assert np.array_equal(ia, ib) and all(np.array_equal(ma[k], mb[k]) for k in ma)
    assert np.array_equal(a.frame(11)[0], ia)  # a pure function of the index
    others = [make_scene("fast_motion", s, 12, SIZE).frame(11)[0] for s in (4, FRESH_SEEDS[0])]
    assert not any(o.shape == ia.shape and np.array_equal(o, ia) for o in others)
    with pytest.raises(IndexError):
        a.frame(12)
    with pytest.raises(ValueError, match="unknown scene kind"):
        make_scene("teleport", 0)


def _square(side: int, value: int) -> Sprite:
    return Sprite(f"square{value}", np.full((side, side, 3), value, np.uint8), np.ones((side, side), np.float32))


def test_ground_truth_is_exact():
    """Solid squares at known places over a black background: the masks are exactly the uncovered part
    of each target's square, also when a look-alike passes in front and when the target is blurred by
    its own motion (a box blurred symmetrically crosses half coverage at its unblurred edges)."""
    back = np.zeros((100, 100, 3), np.uint8)
    target = Layer(_square(20, 200), lambda t: (30.0 + 4 * t, 40.0, 20.0, 0.0), obj_id=1, blur=1.0)
    twin = Layer(_square(20, 200), lambda t: (45.0, 40.0, 20.0, 0.0), depth=lambda i: 1.0 if i == 1 else -1.0)
    scene = Scene("squares", (80, 120), 3, back, [target, twin])
    for i in range(3):
        image, masks = scene.frame(i)
        want = np.zeros((80, 120), bool)
        want[30:50, 20 + 4 * i:40 + 4 * i] = True
        if i == 1:  # the twin (x 35..55) is in front on frame 1 only
            want[30:50, 35:55] = False
        assert np.array_equal(masks[1], want), i
        assert (image[30:50, 22 + 4 * i:38 + 4 * i] == 200).all()  # where every blur sample covers it
        assert (image[:29] == 0).all() and (image[51:] == 0).all()


def test_the_lookalike_kind_crosses_the_target_in_front_and_behind():
    scene = make_scene("lookalike", TRAIN_SEEDS[0], size=SIZE)
    twin = scene.layers[1]
    assert twin.obj_id is None and twin.sprite is scene.layers[0].sprite  # same texture, not a target
    area0 = scene.frame(0)[1][1].sum()
    hidden = [1 - scene.frame(i)[1][1].sum() / area0 for i in range(len(scene))]
    assert max(hidden) > 0.3  # covered by its twin in front
    assert twin.depth(0) > 0 > twin.depth(len(scene) - 1)  # and later passes behind


def test_scale_range_and_blur():
    scenes = [make_scene("scale_rotation", s, size=SIZE) for s in TRAIN_SEEDS]
    heights = [la.pose(len(sc) - 1)[2] / la.pose(0)[2] for sc in scenes for la in sc.layers]
    assert min(heights) <= 0.35 and max(heights) >= 3.0
    fast = make_scene("fast_motion", TRAIN_SEEDS[0], size=SIZE)
    assert all(la.blur > 0 for la in fast.layers) and fast._shake > 0


def test_box_iou_counts_agreeing_absence():
    iou = benchmark_cpu.box_iou
    assert iou(None, None) == 1.0 and iou((0, 0, 2, 2), None) == 0.0 and iou(None, (0, 0, 2, 2)) == 0.0
    assert iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", benchmark_cpu.BASELINES)
def test_baselines_run(name):
    if benchmark_cpu.baseline_factory(name) is None:
        pytest.skip(f"OpenCV without {name.upper()} (opencv-contrib: requirements/baselines.txt)")
    scene = make_scene("touching", TRAIN_SEEDS[0], n_frames=8, size=SIZE)
    core = benchmark_cpu.HQSMemConfig()
    score = benchmark_cpu.run(scene, core, benchmark_cpu.CpuBackendConfig(), core.tracker.min_area, (name,))
    per_frame = score.baselines[name]
    assert len(per_frame) == 8 * len(scene.object_ids) == len(score.box)
    assert per_frame[0] == pytest.approx(1.0, abs=0.05)  # started on the first frame's boxes
    assert np.mean(per_frame) > 0.5 and score.baseline_seconds[name] > 0
