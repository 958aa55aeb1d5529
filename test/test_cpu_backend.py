"""Contracts of the CPU backend's components: the Backend protocol, shapes, memory bookkeeping,
object-centric embeddings, flow without erosion, re-detection, and the ablation switches."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from hqsmem_ros.core.backends.base import Backend
from hqsmem_ros.core.backends.cpu import (CellMemoryConfig, CpuBackend, CpuBackendConfig, _adds_the_object, _color_vote,
                                         _grabcut_regrow, _upsample, _without_specks)
from hqsmem_ros.core.backends.cpu_appearance import ObjectAppearance, ScoreParams
from hqsmem_ros.core.backends.cpu_features import FeatureExtractor, cell_coverage
from hqsmem_ros.core.backends.cpu_flow import FlowWarper
from hqsmem_ros.core.config import from_flat, specs
from hqsmem_ros.core.factory import build_cpu_tracker
from hqsmem_ros.core.memory import MemoryConfig
from hqsmem_ros.core.metrics import jaccard
from hqsmem_ros.core.sequences import make_sequence
from hqsmem_ros.core.targets import check_target
from hqsmem_ros.core.tracker import HQSMemConfig, HQSMemTracker
from hqsmem_ros.core.types import Frame

SIZE = (240, 320)


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor()  # loading the weights once keeps the module fast


@pytest.fixture
def make_backend(extractor):
    return lambda overrides=None: CpuBackend(from_flat(CpuBackendConfig(), overrides or {}), extractor)


@pytest.fixture(scope="module")
def translation():
    return make_sequence("translation", 20, SIZE)


def framed(seq, i):
    """Frame ``i`` of ``seq`` as the tracker hands it to a backend, and its true masks."""
    rgb, masks = seq.frame(i)
    return Frame(i, rgb), masks


def start(backend, seq, key=0):
    frame, masks = framed(seq, 0)
    for oid in seq.object_ids:
        backend.add_object(oid, frame, masks[oid], key)
    backend.accept(masks)
    return masks


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_conforms_to_the_protocol_and_declares_its_parameters(make_backend):
    assert isinstance(make_backend(), Backend)
    defaults = {s.name: s.default for s in specs(CpuBackendConfig())}  # raises if a field is not a param()
    assert "threads" in defaults
    for switch in ("flow.enabled", "correction.enabled", "redetect"):
        assert isinstance(defaults[switch], bool)


def test_build_cpu_tracker_runs_the_loop(translation):
    tracker = build_cpu_tracker(CpuBackendConfig(), HQSMemConfig())
    assert isinstance(tracker, HQSMemTracker) and tracker.refiner is None
    frame, _ = translation.frame(0)
    result = tracker.process(frame, [check_target(t, SIZE) for t in translation.targets()])
    assert result.ok and [o.obj_id for o in result.objects] == translation.object_ids


def test_step_returns_full_resolution_masks_and_bounded_confidence(make_backend, translation):
    backend = make_backend()
    start(backend, translation)
    frame, truth = framed(translation, 1)
    preds = backend.step(frame)
    assert set(preds) == set(translation.object_ids)
    for oid, p in preds.items():
        assert p.mask.shape == SIZE and p.mask.dtype == bool
        assert 0.0 <= p.confidence <= 1.0
        assert jaccard(p.mask, truth[oid]) > 0.8


def test_memory_write_evict_bookkeeping(make_backend, translation):
    backend = make_backend()
    start(backend, translation)
    assert backend.memory_keys() == [0]
    ref_bytes = backend.memory_bytes()
    assert ref_bytes > 0
    frame, masks = framed(translation, 1)
    backend.step(frame)
    backend.accept(masks)
    backend.write_memory(1)
    assert backend.memory_keys() == [0, 1]
    assert backend.memory_bytes() > ref_bytes
    backend.evict_memory(1)
    assert backend.memory_keys() == [0] and backend.memory_bytes() == ref_bytes
    backend.remove_object(1)
    assert backend.memory_bytes() < ref_bytes
    backend.reset()
    assert backend.memory_keys() == [] and backend.memory_bytes() == 0


def test_memory_stays_bounded_by_the_trackers_entries(extractor):
    seq = make_sequence("translation", 30, SIZE)
    config = CpuBackendConfig(memory=CellMemoryConfig(fg_cells=16, bg_cells=32))
    core = HQSMemConfig(memory=MemoryConfig(capacity=3, update_every=2, relevance_threshold=-1.0))
    backend = CpuBackend(config, extractor)
    tracker = HQSMemTracker(backend, core)
    per_entry = len(seq.object_ids) * (config.memory.fg_cells + config.memory.bg_cells) * extractor.channels * 4
    for i in range(len(seq)):
        frame, _ = seq.frame(i)
        tracker.process(frame, [check_target(t, SIZE) for t in seq.targets()] if i == 0 else [])
        assert backend.memory_keys() == sorted(tracker.memory.entries)
        assert len(backend.memory_keys()) <= 3 + 1
        assert backend.memory_bytes() <= (3 + 1) * per_entry


def test_embedding_is_object_centric(make_backend):
    seq = make_sequence("translation", 30, SIZE)
    backend = make_backend()
    start(backend, seq)
    frame0, masks0 = seq.frame(0)
    e1_t0, e2_t0 = backend.embed({1: masks0[1]}), backend.embed({2: masks0[2]})
    frame, masks = framed(seq, 29)
    backend.step(frame)
    backend.accept(masks)
    e1_t29 = backend.embed({1: masks[1]})
    assert cos(e1_t0, e1_t29) > 0.9  # the same object later, moved over a panned background
    assert cos(e1_t0, e2_t0) < cos(e1_t0, e1_t29) - 0.1  # two objects differ
    both = backend.embed({1: masks[1], 2: masks[2]})
    assert abs(np.linalg.norm(both) - 1) < 1e-5
    assert cos(both, e1_t29) > cos(e1_t0, e2_t0)  # an average of the objects, not of the frame
    glob = backend.embed({})
    assert abs(np.linalg.norm(glob) - 1) < 1e-5 and cos(glob, e1_t29) < 0.99


def shifted_pair(dx: int, dy: int, steps: int):
    """Frames of a photo translating by (dx, dy) per frame, and a blob mask that moves with it."""
    photo = skimage.data.astronaut()
    h, w = 240, 320
    mask = np.zeros((h, w), bool)
    yy, xx = np.ogrid[:h, :w]
    mask[(yy - 100) ** 2 / 40 ** 2 + (xx - 120) ** 2 / 55 ** 2 <= 1] = True
    frames = [Frame(k, photo[100 - k * dy:100 - k * dy + h, 100 - k * dx:100 - k * dx + w].copy())
              for k in range(steps)]
    masks = [np.roll(mask, (k * dy, k * dx), axis=(0, 1)) for k in range(steps)]
    return frames, masks


@pytest.mark.parametrize("model", ["similarity", "dense"])
def test_flow_carries_a_mask_without_erosion(make_backend, model):
    frames, masks = shifted_pair(3, 2, 20)
    backend = make_backend({"correction.enabled": False, "motion_model": model})
    backend.add_object(1, frames[0], masks[0], 0)
    backend.accept({1: masks[0]})
    for frame in frames[1:]:
        mask = backend.step(frame)[1].mask
        backend.accept({1: mask})
    assert 0.95 < mask.sum() / masks[-1].sum() < 1.05
    assert jaccard(mask, masks[-1]) > 0.9


def test_without_flow_the_mask_stays_put(make_backend):
    frames, masks = shifted_pair(3, 2, 4)
    backend = make_backend({"correction.enabled": False, "flow.enabled": False})
    backend.add_object(1, frames[0], masks[0], 0)
    backend.accept({1: masks[0]})
    for frame in frames[1:]:
        pred = backend.step(frame)[1]
        backend.accept({1: pred.mask})
    assert jaccard(pred.mask, masks[0]) > 0.97 and pred.confidence == 1.0


@pytest.mark.parametrize("redetect", [True, False])
def test_an_absent_object_is_found_again_elsewhere(make_backend, redetect):
    seq = make_sequence("exit_reentry", size=SIZE)
    backend = make_backend({"redetect": redetect})
    masks = start(backend, seq)
    gone, back = 60, len(seq) - 1
    assert not seq.frame(gone)[1][1].any() and not (masks[1] & seq.frame(back)[1][1]).any()
    frame, _ = framed(seq, gone)
    pred = backend.step(frame)[1]
    assert pred.confidence < 0.3 or not pred.mask.any()
    backend.accept({oid: np.zeros(SIZE, bool) if oid == 1 else m for oid, m in seq.frame(gone)[1].items()})
    frame, truth = framed(seq, back)
    pred = backend.step(frame)[1]
    if redetect:
        assert pred.confidence >= 0.3 and jaccard(pred.mask, truth[1]) > 0.5
    else:
        assert not pred.mask.any()


def test_an_absent_object_is_not_found_again_in_a_tracked_look_alike(make_backend):
    """Object 1 leaves; its twin (the same texture) stays. Re-detection takes the twin only when the twin is
    not itself tracked: the cells a tracked object held are not searched."""
    bg = cv2.resize(skimage.data.coffee(), SIZE[::-1], interpolation=cv2.INTER_AREA)
    patch = cv2.resize(skimage.data.astronaut()[40:240, 160:360], (64, 64), interpolation=cv2.INTER_AREA)

    def scene(with_object_1):
        rgb, masks = bg.copy(), {}
        for oid, x, shown in ((1, 40, with_object_1), (2, 200, True)):
            masks[oid] = np.zeros(SIZE, bool)
            if shown:
                rgb[80:144, x:x + 64] = patch
                masks[oid][80:144, x:x + 64] = True
        return rgb, masks

    found_on_twin = {}
    for ids in ((1, 2), (1,)):
        backend = make_backend()
        rgb, masks = scene(True)
        for oid in ids:
            backend.add_object(oid, Frame(0, rgb), masks[oid], 0)
        backend.accept({oid: masks[oid] for oid in ids})
        rgb, masks = scene(False)
        backend.step(Frame(1, rgb))
        backend.accept({oid: masks[oid] for oid in ids})  # object 1 now absent
        pred = backend.step(Frame(2, rgb))[1]
        found_on_twin[ids] = pred.confidence >= 0.3 and jaccard(pred.mask, masks[2]) > 0.5
    assert found_on_twin == {(1, 2): False, (1,): True}


def test_an_untracked_look_alike_passing_in_front_does_not_take_the_object_along(make_backend):
    """An untracked twin (the same texture) comes from the left, passes in front of the slowly drifting
    target and goes on to the right. Followed as a look-alike (its flow left out of the target's motion,
    its cells out of what the target adopts or regrows), it leaves the target's mask behind; before, the
    mask spread over both and still covered the twin after they separated (measured: 38-46 % of the
    mask on the twin over frames 35-45, now 0)."""
    bg = cv2.resize(skimage.data.coffee(), SIZE[::-1], interpolation=cv2.INTER_AREA)
    patch = cv2.resize(skimage.data.astronaut()[40:240, 160:360], (56, 56), interpolation=cv2.INTER_AREA)

    def scene(i):
        rgb, target, twin = bg.copy(), np.zeros(SIZE, bool), np.zeros(SIZE, bool)
        tx, wx = 110 + i // 2, 10 + 5 * i
        rgb[90:146, tx:tx + 56] = patch
        target[90:146, tx:tx + 56] = True
        rgb[94:150, wx:wx + 56] = patch[:, :max(0, min(56, SIZE[1] - wx))]
        twin[94:150, wx:wx + 56] = True
        return rgb, target & ~twin, twin

    backend = make_backend()
    rgb, target, _ = scene(0)
    backend.add_object(1, Frame(0, rgb), target, 0)
    backend.accept({1: target})
    on_twin = []
    for i in range(1, 46):
        rgb, target, twin = scene(i)
        mask = backend.step(Frame(i, rgb))[1].mask
        backend.accept({1: mask})
        on_twin.append((mask & twin).sum() / max(mask.sum(), 1))
    assert max(on_twin[34:]) < 0.1
    assert jaccard(mask, target) > 0.55  # measured 0.63 (0.45 before)


def test_features_correct_a_mask_dragged_by_an_occluder(make_backend):
    """With correction, pixels the flow carried onto the occluder are dropped; without it they stay."""
    seq = make_sequence("occlusion", size=SIZE)
    scores = {}
    for correction in (True, False):
        backend = make_backend({"correction.enabled": correction})
        start(backend, seq)
        for i in range(1, 70):
            frame, truth = framed(seq, i)
            preds = backend.step(frame)
            backend.accept({oid: p.mask for oid, p in preds.items()})
        scores[correction] = preds[3].mask.sum() / max(truth[3].sum(), 1), truth[3].sum()
    assert scores[True][0] < 2 and scores[False][0] > 2 * scores[True][0]


def test_a_small_object_keeps_its_size_with_correction_on(make_backend):
    """Features are 8 px cells: acting on a boundary between cells they eroded small objects by ~5 % a
    frame (measured before the cell-level rule). Now ~27 px coins keep their size over 20 frames."""
    seq = make_sequence("small_objects", 21, SIZE, n_objects=4)
    backend = make_backend()
    start(backend, seq)
    for i in range(1, 21):
        frame, truth = framed(seq, i)
        preds = backend.step(frame)
        backend.accept({oid: p.mask for oid, p in preds.items()})
    for oid, gt in truth.items():
        assert 0.8 < preds[oid].mask.sum() / gt.sum() < 1.25
        assert jaccard(preds[oid].mask, gt) > 0.7


def test_color_vote_pulls_a_boundary_back_onto_the_colour_edge():
    rgb = np.zeros((80, 80, 3), np.uint8)
    rgb[...] = (30, 120, 40)
    yy, xx = np.ogrid[:80, :80]
    r2 = (yy - 40) ** 2 + (xx - 40) ** 2
    rgb[r2 <= 20 ** 2] = (200, 60, 50)
    halo = r2 <= 24 ** 2    # the mask is 4 px too large; the band reaches 6 px either side of its edge
    vote = _color_vote(rgb, halo, band=6)
    assert (vote[halo & (r2 > 20 ** 2)] < -0.9).all()              # the halo votes background
    assert (vote[(r2 > 19 ** 2) & (r2 <= 20 ** 2)] > 0.9).all()    # the object's rim votes object
    assert (vote[r2 <= 16 ** 2] == 0).all() and (vote[r2 > 31 ** 2] == 0).all()  # outside the band
    assert not _color_vote(rgb, np.zeros((80, 80), bool), band=6).any()


def test_specks_go_and_comparable_parts_stay():
    mask = np.zeros((60, 60), bool)
    mask[5:25, 5:25] = True      # 400 px
    mask[35:50, 35:55] = True    # 300 px: a second part of the same object (split by an occluder)
    mask[2, 50] = mask[55, 3] = True
    kept = _without_specks(mask)
    assert kept[5:25, 5:25].all() and kept[35:50, 35:55].all()
    assert not kept[2, 50] and not kept[55, 3]


def test_a_memory_write_from_a_shrunken_mask_does_not_teach_the_lost_part_as_background(extractor):
    """A key frame whose mask lost half the object must not store that half as background: the features
    would then veto it on later frames (drift). Unverified, the same write does."""
    frames, masks = shifted_pair(3, 2, 6)
    params = ScoreParams(top_k=3, novel_similarity=0.4, temperature=0.05)
    feats = extractor(frames[0].pixels)
    grid = feats.shape[-2:]
    reference = (feats.flatten(1).T.contiguous(), cell_coverage(masks[0], grid))
    cells = extractor(frames[5].pixels).flatten(1).T.contiguous()
    xs = np.nonzero(masks[5])[1]
    kept = masks[5] & (np.arange(masks[5].shape[1]) < np.median(xs))[None, :]
    lost = cell_coverage(masks[5] & ~kept, grid).ravel() >= 0.75
    memory = ObjectAppearance()
    memory.store(0, *reference, 64, 128)
    before = np.median(memory.scores(cells[lost], params)[1])
    after = {}
    for verify in (params, None):
        memory = ObjectAppearance()
        memory.store(0, *reference, 64, 128)
        assert memory.store(1, cells, cell_coverage(kept, grid), 64, 128, verify)
        after[verify is None] = np.median(memory.scores(cells[lost], params)[1])
    assert before > 3
    assert after[False] > 0.9 * before   # verified: the lost half still reads as the object
    assert after[True] < 0.5 * before    # unverified: it moved towards background


def test_the_grabcut_proposal_regrows_a_mask_up_to_the_colour_edge():
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal((40, 140, 60), 12, (90, 90, 3)), 0, 255).astype(np.uint8)  # grass-like
    yy, xx = np.ogrid[:90, :90]
    disc = (yy - 45) ** 2 + (xx - 45) ** 2 <= 22 ** 2
    rgb[disc] = np.clip(rng.normal((190, 60, 50), 12, (int(disc.sum()), 3)), 0, 255).astype(np.uint8)
    eroded = disc & (xx < 61)                      # the right 6 px of the disc lost
    proposal = _grabcut_regrow(rgb, eroded, band=8)
    assert (proposal & disc).sum() > 0.97 * disc.sum()
    assert (proposal & ~disc).sum() < 0.03 * disc.sum()
    assert _grabcut_regrow(rgb, np.zeros_like(disc), band=8) is None


def test_a_proposal_that_adds_background_is_rejected():
    logit = np.full((10, 10), -5.0, np.float32)
    logit[2:6, 2:6] = 5.0                          # the memory calls these cells the object
    mask = np.zeros((80, 80), bool)
    mask[16:32, 16:48] = True                      # cells (2..3, 2..5)
    onto_object = mask.copy()
    onto_object[32:48, 16:48] = True               # adds cells (4..5, 2..5): the object
    onto_background = mask.copy()
    onto_background[16:32, 48:72] = True           # adds cells (2..3, 6..8): background
    assert _adds_the_object(onto_object, mask, logit, 0.8)
    assert not _adds_the_object(onto_background, mask, logit, 0.8)
    assert not _adds_the_object(mask, mask, logit, 0.8)    # adds nothing


def test_an_object_reduced_to_a_fragment_is_let_go(make_backend):
    frames, masks = shifted_pair(0, 0, 2)
    backend = make_backend()
    backend.add_object(1, frames[0], masks[0], 0)
    sliver = np.zeros_like(masks[0])
    ys, xs = np.nonzero(masks[0])
    sliver[ys[xs < xs.min() + 6], xs[xs < xs.min() + 6]] = True   # 6 px of a 110 px wide blob
    backend.accept({1: sliver})
    assert not backend.step(frames[1])[1].mask.any()
    backend.accept({1: masks[0]})
    assert jaccard(backend.step(frames[1])[1].mask, masks[0]) > 0.8


def test_an_object_that_shrinks_slowly_is_not_let_go(make_backend):
    """Moving away, an object ends far below its first size in memory (here 0.12x its area): that is
    scaling, not being cut to a fragment, because it shrank over more frames than the size window."""
    frames, _ = shifted_pair(0, 0, 2)
    # nothing regrows it here (it is a patch of the photo around it): only the fragment rule acts
    backend = make_backend({"correction.size_window": 10, "correction.adopt_logit": 100.0,
                            "correction.regrow_below": 0.0, "regrowth.refine_below": 0.0})
    yy, xx = np.ogrid[:240, :320]

    def blob(s):
        return (yy - 100) ** 2 / (40 * s) ** 2 + (xx - 120) ** 2 / (55 * s) ** 2 <= 1
    backend.add_object(1, frames[0], blob(1.0), 0)
    for s in np.linspace(1.0, 0.35, 30):  # about 7 % of its area a frame
        backend.accept({1: blob(s)})
    mask = backend.step(frames[1])[1].mask
    assert jaccard(mask, blob(0.35)) > 0.7


def test_a_buffer_refilled_in_place_is_analysed_again(make_backend):
    """The backend tells frames apart by index: a caller that refills one array gets the new image's
    analysis, as with a fresh array."""
    frames, masks = shifted_pair(3, 2, 3)
    results = []
    for reuse in (True, False):
        backend = make_backend()
        buffer = frames[0].pixels.copy()
        backend.add_object(1, Frame(0, buffer), masks[0], 0)
        backend.accept({1: masks[0]})
        for k in (1, 2):
            if reuse:
                buffer[:] = frames[k].pixels
                frame = Frame(k, buffer)
            else:
                frame = frames[k]
            pred = backend.step(frame)[1]
            backend.accept({1: pred.mask})
        results.append(pred)
    assert np.array_equal(results[0].mask, results[1].mask) and results[0].confidence == results[1].confidence
    assert jaccard(results[0].mask, masks[2]) > 0.9


def test_upsampling_a_box_equals_cropping_the_upsampled_frame():
    grid = np.random.default_rng(0).random((36, 48)).astype(np.float32)
    box = (53, 211, 77, 390)
    whole = _upsample(grid, (480, 640))
    assert np.allclose(_upsample(grid, (480, 640), box), whole[53:211, 77:390], atol=1e-5)
    assert np.allclose(_upsample(grid, (480, 640), (0, 480, 0, 640)), whole, atol=1e-5)


def test_the_fitted_motion_is_applied_at_full_size_per_axis():
    """Flow at a working size whose aspect differs from the frame's: a rotation measured there is
    mapped to full size axis by axis, so the full-size mask lands where the working-size one does."""
    fh, fw, h, w = 60, 60, 240, 330           # x scale 5.5, y scale 4 (exaggerated to show the error)
    warper = FlowWarper("ultrafast", 0, "similarity")
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a), 3.0], [np.sin(a), np.cos(a), -2.0]])
    ys, xs = np.mgrid[:fh, :fw].astype(np.float32)
    warper.forward = np.dstack([rot[0, 0] * xs + rot[0, 1] * ys + rot[0, 2] - xs,
                                rot[1, 0] * xs + rot[1, 1] * ys + rot[1, 2] - ys]).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[90:150, 120:220] = True
    values, (y0, y1, x0, x1), _ = warper.warp(mask, (90, 150, 120, 220))
    moved = np.zeros((h, w), bool)
    moved[y0:y1, x0:x1] = values >= 0.5
    small = cv2.resize(mask.astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA)
    expected_small = cv2.warpAffine(small, rot, (fw, fh)) >= 0.5
    assert jaccard(cv2.resize(moved.astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA) >= 0.5,
                   expected_small) > 0.9  # measured 0.97; scaling only the shift gave 0.48


def test_cell_coverage_of_a_box_equals_that_of_the_whole_frame():
    """The per-object cost bound: coverage computed over a crop has the whole-frame resize's area weights."""
    mask = np.zeros((480, 640), bool)
    mask[53:211, 77:390] = np.random.default_rng(0).random((158, 313)) > 0.3
    box = (50, 215, 70, 395)
    part = cell_coverage(mask[50:215, 70:395], (36, 48), mask.shape, box)
    assert np.allclose(part, cell_coverage(mask, (36, 48)), atol=1e-5)
