"""SAM-HQ proposer and DINO verifier (random weights in the official formats, CPU): shapes, the candidate
set against segment-anything-hq's own output, feature properties, delta inside VerifiedRefiner, and the first
mask of a box-only target (SAM-HQ's first mask for its box)."""

import numpy as np
import pytest
import torch

from hqsmem_ros.core import box_init
from hqsmem_ros.core.box_init import BoxPromptInit
from hqsmem_ros.core.device import Runtime
from hqsmem_ros.core.dino import DinoVerifier, build_dino
from hqsmem_ros.core.refine import RefinerConfig, VerifiedRefiner
from hqsmem_ros.core.samhq import SamHQProposer, build_sam_hq
from hqsmem_ros.core.types import Frame
from hqsmem_ros.core.weights import locate

H, W = 120, 160
RUNTIME = Runtime(torch.device("cpu"))


@pytest.fixture(scope="module")
def sam(weights_dir):
    return SamHQProposer(build_sam_hq("vit_tiny", locate("vit_tiny", str(weights_dir))), RUNTIME)


@pytest.fixture(scope="module")
def dino(weights_dir):
    name = "vit_small_patch16_224.dino"
    return DinoVerifier(build_dino(name, locate(name, str(weights_dir))), RUNTIME, crop=112)


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    f[30:80, 40:100] = (220, 40, 40)
    f[10:40, 110:150] = (40, 220, 40)
    return Frame(0, f)


def rect(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_candidates_are_hq_first_then_sam_masks_by_predicted_iou(sam, frame):
    boxes = np.array([[40, 30, 100, 80], [110, 10, 150, 40]], np.float32)
    masks, scores = sam.decode(sam.encode(frame), boxes, (H, W))
    assert masks.shape == (2, 4, H, W) and masks.dtype == torch.bool and scores.shape == (2, 4)
    assert torch.all(scores[:, 1:-1] >= scores[:, 2:]) and torch.equal(scores[:, 0], scores[:, 1])

    # The HQ candidate is what segment-anything-hq itself returns for the box (best SAM mask + HQ token).
    from segment_anything_hq import SamPredictor
    predictor = SamPredictor(sam.model)
    predictor.set_torch_image(sam.resize.apply_image_torch(RUNTIME.upload(frame)), (H, W))
    with torch.inference_mode():
        own, iou, _ = predictor.predict_torch(None, None, boxes=predictor.transform.apply_boxes_torch(
            torch.from_numpy(boxes), (H, W)), multimask_output=True, hq_token_only=False)
    assert (own[:, 0] != masks[:, 0]).float().mean() < 1e-3
    torch.testing.assert_close(iou[:, 0], scores[:, 0], rtol=1e-4, atol=1e-4)


def test_propose_returns_masks_per_object(sam, frame):
    proposals = sam.propose(frame, {7: (40, 30, 100, 80), 9: (110, 10, 150, 40)})
    assert set(proposals) == {7, 9}
    for cands in proposals.values():
        assert len(cands) <= 4
        assert all(c.shape == (H, W) and c.dtype == bool and c.any() for c in cands)
    assert sam.propose(frame, {}) == {}


def test_dino_features_are_unit_batched_and_deterministic(dino, frame):
    masks = [rect(40, 30, 100, 80), rect(110, 10, 150, 40), rect(40, 30, 100, 80), rect(0, 0, 1, 1)]
    feats = dino.features(frame, masks)
    assert feats.shape == (4, dino.dim) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(feats[0], feats[2], atol=1e-5)  # same region, same feature
    assert feats[0] @ feats[1] < 0.999  # different regions differ
    one_by_one = np.concatenate([dino.features(frame, [m]) for m in masks])
    np.testing.assert_allclose(feats, one_by_one, atol=1e-4)
    assert dino.features(frame, []).shape == (0, dino.dim)


def test_dino_pools_over_the_mask_not_the_whole_crop(dino, frame):
    box_mask = rect(40, 30, 100, 80)
    inner = rect(60, 45, 80, 65)  # same centre, other mask: only the pooled patches differ
    a, b = dino.features(frame, [box_mask, inner])
    assert a @ b < 0.9999


BASE = rect(45, 35, 95, 75)


@pytest.fixture(scope="module")
def base_proposals(sam, frame):
    """SAM-HQ's candidates for BASE's own box (what the refiner prompts with at box_margin 0)."""
    return sam.propose(frame, {1: (45, 35, 95, 75)})[1]


@pytest.mark.parametrize("delta_offset, accepted", [(-1e-3, True), (1e-3, False)])
def test_verification_accepts_exactly_when_similarity_reaches_delta(sam, dino, frame, base_proposals,
                                                                    delta_offset, accepted):
    base, cands = BASE, base_proposals
    feats = dino.features(frame, [base, *cands])
    sims = feats[1:] @ feats[0]
    best = int(np.argmax(sims))
    refiner = VerifiedRefiner(sam, dino, RefinerConfig(similarity_threshold=float(sims[best]) + delta_offset,
                                                       box_margin=0.0))
    result = refiner.refine(frame, {1: base})[1]
    assert result.accepted is accepted
    assert result.similarity == pytest.approx(float(sims[best]), abs=1e-4)
    assert np.array_equal(result.mask, cands[best] if accepted else base)


def test_without_verification_the_top_proposal_is_taken(sam, dino, frame, base_proposals):
    refiner = VerifiedRefiner(sam, dino, RefinerConfig(verify=False, box_margin=0.0))
    result = refiner.refine(frame, {1: BASE})[1]
    assert result.accepted and np.array_equal(result.mask, base_proposals[0])


BOX = (40, 30, 100, 80)


def test_a_box_only_target_starts_from_samhq_first_mask_for_its_box(sam, frame, monkeypatch):
    monkeypatch.setattr(box_init, "grabcut_mask", None)  # the GPU path must not fall back on GrabCut
    cands = sam.propose(Frame(1, frame.pixels.copy()), {0: BOX})[0]  # fresh index: encoded again
    assert cands
    first = BoxPromptInit(sam)(frame, BOX)
    assert first.shape == (H, W) and first.dtype == bool and np.array_equal(first, cands[0])


def test_a_box_without_a_proposal_starts_as_the_filled_box():
    class Nothing:
        def propose(self, frame, boxes):
            return {oid: [] for oid in boxes}

    mask = BoxPromptInit(Nothing())(Frame(0, np.zeros((H, W, 3), np.uint8)), BOX)
    assert mask.sum() == 60 * 50 and mask[30:80, 40:100].all()
