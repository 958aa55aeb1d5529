"""core.session.TrackingSession: target checks with reasons, merging, the resolution policy, fault recovery,
removal and reset, on a scripted backend so that every branch is observable (no ROS)."""

import numpy as np
import pytest
from test_tracker import FRAME, H, W, ScriptedBackend, box_mask

from hqsmem_ros.core.session import TrackingSession
from hqsmem_ros.core.targets import Rejection
from hqsmem_ros.core.tracker import HQSMemConfig, HQSMemTracker, TrackerConfig
from hqsmem_ros.core.types import Target

SMALL = np.zeros((H // 2, W // 2, 3), np.uint8)


def make_session(**tracker):
    backend = ScriptedBackend()
    config = HQSMemConfig(TrackerConfig(min_area=4, **{"resolution_change_frames": 2, "fault_limit": 2, **tracker}))
    return TrackingSession(HQSMemTracker(backend, config)), backend


def reasons(outcome):
    return sorted(r.reason for r in outcome.rejected)


def test_targets_for_one_id_merge_the_latest_wins_with_one_initialisation():
    session, backend = make_session()
    first, last = Target(1, "a", mask=box_mask(0, 0, 10, 10)), Target(1, "b", mask=box_mask(30, 30, 40, 40))
    outcome = session.process(FRAME, [first, last])
    (obj,) = outcome.result.objects
    assert (obj.label, obj.box) == ("b", (30, 30, 40, 40)) and outcome.rejected == []
    assert len(backend.memory[0]) == 1  # one object started on frame 0


def test_refused_targets_carry_a_machine_readable_reason():
    session, _ = make_session(max_objects=2)
    outcome = session.process(FRAME, [
        Target(1, box=(0, 0, 0, 5)),                      # zero area
        Target(2, mask=np.zeros((H + 1, W), bool)),      # wrong size
        Target(3, mask=box_mask(0, 0, 5, 5)),
        Target(4, mask=box_mask(10, 0, 15, 5)),
        Target(5, mask=box_mask(20, 0, 25, 5)),          # a third object over max_objects=2
    ])
    assert reasons(outcome) == ["box", "mask", "max_objects"]
    assert [o.obj_id for o in outcome.result.objects] == [3, 4]
    assert all(isinstance(r, Rejection) and str(r).startswith("target ") for r in outcome.rejected)


def test_answers_at_call_time_count_tracked_and_waiting_ids():
    session, _ = make_session(max_objects=3)
    session.process(FRAME, [Target(1, mask=box_mask(0, 0, 5, 5))])
    fits, refused = session.check_targets([Target(i, box=(0, 0, 5, 5)) for i in (1, 2, 3)], None, waiting={9})
    assert [t.obj_id for t in fits] == [1, 2] and [r.reason for r in refused] == ["max_objects"]
    fits, refused = session.check_targets([Target(4, box=(100, 100, 120, 120))], (H, W))
    assert fits == [] and [r.reason for r in refused] == ["box"]  # outside the known frame
    fits, refused = session.check_targets([Target(4, box=(100, 100, 120, 120))], None)
    assert [t.obj_id for t in fits] == [4] and refused == []  # no size yet: checked when it starts


def test_a_stray_frame_is_refused_and_a_persistent_size_restarts_tracking_reporting_the_dropped():
    session, _ = make_session()
    session.process(FRAME, [Target(1, mask=box_mask(0, 0, 5, 5)), Target(2, mask=box_mask(9, 9, 15, 15))])
    with pytest.raises(Rejection) as refused:
        session.process(SMALL)
    assert refused.value.reason == "resolution_mismatch" and session.object_ids == {1, 2}
    assert session.process(FRAME).resized is None  # the tracked size in between: the count starts again
    with pytest.raises(Rejection):
        session.process(SMALL)
    outcome = session.process(SMALL, [Target(3, box=(0, 0, 4, 4))])  # the second in a row: accepted
    assert outcome.resized == ((H, W), (H // 2, W // 2)) and outcome.dropped == [1, 2]
    assert [o.obj_id for o in outcome.result.objects] == [3] and session.size == (H // 2, W // 2)


def test_step_refuses_a_frame_the_policy_did_not_admit():
    session, _ = make_session()
    session.process(FRAME, [Target(1, mask=box_mask(0, 0, 5, 5))])
    with pytest.raises(Rejection, match="while tracking"):
        session.step(SMALL)
    assert session.object_ids == {1}


def test_after_fault_limit_faults_objects_restart_from_their_last_good_masks():
    session, backend = make_session()
    session.process(FRAME, [Target(1, "cup", mask=box_mask(10, 10, 20, 20))])
    good = session.process(FRAME).result.objects[0].mask
    backend.fail_next = True
    first = session.process(FRAME)
    assert not first.result.ok and first.restarting is None  # one fault: keep going
    backend.fail_next = True
    second = session.process(FRAME)
    assert second.restarting == [1] and session.object_ids == {1}
    (obj,) = session.process(FRAME).result.objects
    assert obj.label == "cup" and np.array_equal(obj.mask, good)


def test_remove_covers_objects_restarting_after_a_fault_reset():
    session, backend = make_session(fault_limit=1)
    session.process(FRAME, [Target(1, mask=box_mask(0, 0, 5, 5)), Target(2, mask=box_mask(9, 9, 15, 15))])
    session.process(FRAME)
    backend.fail_next = True
    assert session.process(FRAME).restarting == [1, 2]
    assert session.remove([2, 2, 7]) == [2] and session.object_ids == {1}
    assert [o.obj_id for o in session.process(FRAME).result.objects] == [1]


def test_reset_forgets_the_objects_and_the_size():
    session, _ = make_session()
    session.process(FRAME, [Target(1, mask=box_mask(0, 0, 5, 5))])
    assert session.reset() == 1 and session.object_ids == frozenset() and session.size is None
    assert session.process(SMALL).resized is None  # a new stream may come at another size at once
