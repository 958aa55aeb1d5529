"""VerifiedRefiner (steps 2-3): box prompts, argmax by similarity, the delta threshold, the ablation switches."""

import numpy as np
import pytest

from hqsmem_ros.core.refine import RefinerConfig, VerifiedRefiner, expand_box
from hqsmem_ros.core.types import Frame


def rect(x0, y0, x1, y1, shape=(50, 50)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


class Proposals:
    def __init__(self, *cands):
        self.cands = list(cands)
        self.boxes = None

    def propose(self, frame, boxes):
        self.boxes = boxes
        return {oid: self.cands for oid in boxes}


class MaskFeatures:
    def __init__(self):
        self.batches = []

    def features(self, frame, masks):
        self.batches.append(len(masks))
        f = np.stack([m.ravel().astype(float) for m in masks])
        return f / np.linalg.norm(f, axis=1, keepdims=True)


FRAME = Frame(0, np.zeros((50, 50, 3), np.uint8))
BASE = rect(10, 10, 20, 20)
CLOSE, FAR = rect(10, 10, 20, 19), rect(30, 30, 40, 40)


def test_best_matching_candidate_wins_over_the_proposers_order():
    features = MaskFeatures()
    out = VerifiedRefiner(Proposals(FAR, CLOSE), features).refine(FRAME, {1: BASE, 2: rect(0, 0, 5, 5)})
    assert out[1].accepted and np.array_equal(out[1].mask, CLOSE)
    assert out[1].similarity == pytest.approx(90 / np.sqrt(90 * 100))
    assert features.batches == [6]  # both objects' base masks and candidates in one feature pass


def test_below_delta_the_base_mask_stands():
    out = VerifiedRefiner(Proposals(FAR), MaskFeatures()).refine(FRAME, {1: BASE})
    assert not out[1].accepted and np.array_equal(out[1].mask, BASE) and out[1].similarity == 0.0


def test_without_verification_the_top_proposal_is_taken():
    cfg = RefinerConfig(verify=False)
    out = VerifiedRefiner(Proposals(FAR, CLOSE), MaskFeatures(), cfg).refine(FRAME, {1: BASE})
    assert out[1].accepted and np.array_equal(out[1].mask, FAR)


def test_disabled_refiner_proposes_nothing():
    proposer = Proposals(CLOSE)
    out = VerifiedRefiner(proposer, MaskFeatures(), RefinerConfig(enabled=False)).refine(FRAME, {1: BASE})
    assert proposer.boxes is None and not out[1].accepted


def test_box_prompt_has_the_configured_margin_and_stays_in_the_image():
    proposer = Proposals(CLOSE)
    VerifiedRefiner(proposer, MaskFeatures(), RefinerConfig(box_margin=0.5)).refine(FRAME, {1: BASE})
    assert proposer.boxes == {1: (5, 5, 25, 25)}
    assert expand_box((0, 0, 50, 50), 0.5, (50, 50)) == (0, 0, 50, 50)
