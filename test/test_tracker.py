"""The tracker loop's contract, with a scripted backend and refiner so every branch is observable."""

import numpy as np
import pytest

from hqsmem_ros.core.backends.base import Backend
from hqsmem_ros.core.memory import MemoryConfig
from hqsmem_ros.core.refine import RefinerConfig, VerifiedRefiner
from hqsmem_ros.core.targets import Rejection, check_target
from hqsmem_ros.core.tracker import HQSMemConfig, HQSMemTracker, TrackerConfig
from hqsmem_ros.core.types import Prediction, Target

H, W = 60, 80


class ScriptedBackend:
    """Moves each prior mask by ``shift`` per frame; records what the tracker tells it."""

    name = "scripted"
    device = "cpu"

    def __init__(self, shift=(0, 2)):
        self.shift = shift
        self.priors: dict[int, np.ndarray] = {}
        self.memory: dict[int, set[int]] = {}
        self.accepted_log: list[dict[int, np.ndarray]] = []
        self.fail_next = False
        self.hidden: set[int] = set()

    def add_object(self, obj_id, frame, mask, key):
        self.priors[obj_id] = mask
        self.memory.setdefault(key, set()).add(obj_id)

    def remove_object(self, obj_id):
        self.priors.pop(obj_id)
        for objs in self.memory.values():
            objs.discard(obj_id)

    def step(self, frame):
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("CUDA out of memory (simulated)")
        dy, dx = self.shift
        return {oid: Prediction(np.zeros_like(m) if oid in self.hidden else np.roll(m, (dy, dx), (0, 1)), 0.9)
                for oid, m in self.priors.items()}

    def accept(self, masks):
        self.accepted_log.append(masks)
        self.priors.update(masks)

    def embed(self, masks):
        return np.array([1.0, float(len(masks))])

    def write_memory(self, key):
        self.memory[key] = set(self.priors)

    def evict_memory(self, key):
        del self.memory[key]

    def memory_keys(self):
        return list(self.memory)

    def memory_bytes(self):
        return 0

    def reset(self):
        self.__init__(self.shift)


def box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


FRAME = np.zeros((H, W, 3), np.uint8)


def make_tracker(refiner=None, refiner_config=RefinerConfig(), **memory):
    backend = ScriptedBackend()
    cfg = HQSMemConfig(TrackerConfig(min_area=4), MemoryConfig(**{"update_every": 1, "capacity": 3, **memory}),
                       refiner_config)
    return HQSMemTracker(backend, cfg, refiner), backend


def test_scripted_backend_satisfies_the_protocol():
    assert isinstance(ScriptedBackend(), Backend)


def test_one_result_per_frame_following_the_base_model():
    tracker, _ = make_tracker()
    first = tracker.process(FRAME, [Target(1, "cup", mask=box_mask(10, 10, 20, 20))])
    assert [o.obj_id for o in first.objects] == [1] and first.objects[0].box == (10, 10, 20, 20)
    second = tracker.process(FRAME)
    assert second.frame_index == 1 and second.objects[0].present
    assert second.objects[0].box == (12, 10, 22, 20) and second.objects[0].label == "cup"


class FixedProposer:
    def __init__(self, candidate):
        self.candidate = candidate
        self.calls = 0

    def propose(self, frame, boxes):
        self.calls += 1
        return {oid: [self.candidate] for oid in boxes}


class IdentityFeatures:
    """Feature = the mask itself, flattened: cosine = mask overlap, so acceptance is predictable."""

    def features(self, frame, masks):
        f = np.stack([m.ravel().astype(float) for m in masks])
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-9)


@pytest.mark.parametrize("delta,accepted", [(0.5, True), (0.95, False)])
def test_verification_threshold_decides_and_teacher_forcing_feeds_back(delta, accepted):
    candidate = box_mask(12, 10, 21, 20)  # overlaps the base mask (12..22) with cos = sqrt(90/100) = 0.95
    refiner = VerifiedRefiner(FixedProposer(candidate), IdentityFeatures())
    tracker, backend = make_tracker(refiner, RefinerConfig(similarity_threshold=delta))
    tracker.process(FRAME, [Target(1, mask=box_mask(10, 10, 20, 20))])
    result = tracker.process(FRAME)
    expected = candidate if accepted else box_mask(12, 10, 22, 20)
    assert result.objects[0].refined is accepted
    assert np.array_equal(result.objects[0].mask, expected)
    assert np.array_equal(backend.accepted_log[-1][1], expected)  # the prior for the next frame


def test_absent_objects_get_no_refinement_and_come_back():
    proposer = FixedProposer(box_mask(0, 0, 5, 5))
    tracker, backend = make_tracker(VerifiedRefiner(proposer, IdentityFeatures()))
    tracker.process(FRAME, [Target(1, mask=box_mask(10, 10, 20, 20))])
    backend.hidden.add(1)
    result = tracker.process(FRAME)
    assert not result.objects[0].present and result.objects[0].box is None and proposer.calls == 0
    backend.hidden.clear()
    backend.priors[1] = box_mask(30, 30, 40, 40)  # the base model re-detects it elsewhere
    assert tracker.process(FRAME).objects[0].present


def test_memory_is_written_on_schedule_and_bounded_by_capacity_plus_pinned():
    tracker, backend = make_tracker(capacity=3, relevance_threshold=-1.0)
    tracker.process(FRAME, [Target(1, mask=box_mask(0, 10, 10, 20))])
    for _ in range(30):
        tracker.process(FRAME)
        assert len(backend.memory) <= 3 + 1
        assert sorted(backend.memory) == sorted(tracker.memory.entries)
    assert 0 in backend.memory  # the reference frame is pinned


def test_remove_evicts_the_reference_frame_and_readd_restarts():
    tracker, backend = make_tracker()
    tracker.process(FRAME, [Target(1, mask=box_mask(10, 10, 20, 20)), Target(2, mask=box_mask(40, 40, 50, 50))])
    tracker.process(FRAME)
    assert tracker.remove([1, 9]) == [9]
    assert tracker.object_ids == [2] and 1 not in backend.priors
    assert 0 in backend.memory  # still pinned by object 2
    tracker.remove([2])
    assert 0 not in tracker.memory.entries and 0 not in backend.memory
    result = tracker.process(FRAME, [Target(1, mask=box_mask(5, 5, 15, 15))])
    assert result.objects[0].obj_id == 1 and result.objects[0].box == (5, 5, 15, 15)


def test_a_target_for_a_tracked_id_reinitialises_it():
    tracker, _ = make_tracker()
    tracker.process(FRAME, [Target(1, mask=box_mask(10, 10, 20, 20))])
    result = tracker.process(FRAME, [Target(1, "again", mask=box_mask(40, 40, 50, 50))])
    assert len(result.objects) == 1 and result.objects[0].box == (40, 40, 50, 50)
    assert result.objects[0].label == "again"


def test_a_backend_fault_yields_a_flagged_result_and_the_next_frame_proceeds():
    tracker, backend = make_tracker()
    tracker.process(FRAME, [Target(1, mask=box_mask(10, 10, 20, 20))])
    backend.fail_next = True
    bad = tracker.process(FRAME)
    assert not bad.ok and "out of memory" in bad.status and not bad.objects[0].present
    assert tracker.consecutive_faults == 1
    good = tracker.process(FRAME)
    assert good.ok and good.objects[0].present and tracker.consecutive_faults == 0


def test_box_only_target_is_segmented_inside_its_box():
    frame = np.full((H, W, 3), 30, np.uint8)
    frame[20:40, 30:50] = (220, 40, 40)
    tracker, _ = make_tracker()
    target = check_target(Target(1, box=(25.0, 15.0, 55.0, 45.0)), (H, W))
    mask = tracker.process(frame, [target]).objects[0].mask
    assert mask[25:35, 35:45].all() and not mask[:15].any() and not mask[:, :25].any()


class RecordingBackend(ScriptedBackend):
    def __init__(self, shift=(0, 2)):
        super().__init__(shift)
        self.frames = []

    def add_object(self, obj_id, frame, mask, key):
        self.frames.append(frame)
        super().add_object(obj_id, frame, mask, key)

    def step(self, frame):
        self.frames.append(frame)
        return super().step(frame)

    def reset(self):
        self.priors.clear()
        self.memory.clear()


def test_the_backend_gets_one_frame_index_per_processed_image_never_reused_after_reset():
    backend = RecordingBackend()
    tracker = HQSMemTracker(backend, HQSMemConfig(TrackerConfig(min_area=4)))
    buffer = FRAME.copy()  # one array refilled by the caller: only the index tells the frames apart
    tracker.process(buffer, [Target(1, mask=box_mask(10, 10, 20, 20))])
    tracker.process(buffer)
    tracker.reset()
    tracker.process(buffer, [Target(1, mask=box_mask(10, 10, 20, 20))])
    tracker.process(buffer)
    assert [f.index for f in backend.frames] == [0, 1, 2, 3]
    assert all(f.pixels is buffer for f in backend.frames)


def test_the_prediction_hook_replaces_the_base_models_masks():
    tracker, _ = make_tracker()
    tracker.process(FRAME, [Target(1, mask=box_mask(10, 10, 20, 20))])
    seen = []

    def hook(frame, preds):
        seen.append((frame.index, set(preds)))
        return {oid: Prediction(box_mask(40, 30, 50, 40), 1.0) for oid in preds}

    tracker.on_predictions = hook
    result = tracker.process(FRAME)
    assert seen == [(1, {1})] and result.objects[0].box == (40, 30, 50, 40)


@pytest.mark.parametrize("target,reason", [
    (Target(1), "neither a box nor a mask"),
    (Target(1, box=(float("nan"), 0, 5, 5)), "non-finite"),
    (Target(1, box=(5, 5, 5, 9)), "zero or negative area"),
    (Target(1, box=(100, 100, 120, 130)), "outside"),
    (Target(1, mask=np.zeros((H, W), bool)), "mask is empty"),
    (Target(1, mask=np.ones((H + 1, W), bool)), "mask is 80x61"),
    (Target(1, box=(0, 0, 5, 5), mask=box_mask(30, 30, 40, 40)), "do not overlap"),
])
def test_check_target_rejects_with_a_reason(target, reason):
    with pytest.raises(Rejection, match=reason):
        check_target(target, (H, W))


def test_check_target_clips_a_box_partly_outside():
    assert check_target(Target(1, box=(-5.5, 10, 500, 20.2)), (H, W)).box == (0, 10, W, 21)

