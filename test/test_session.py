"""core.session.TrackingSession: target checks with reasons, merging, the resolution policy, fault recovery,
removal and reset, on a scripted backend so that every branch is observable (no ROS)."""

import numpy as np
import pytest
from test_tracker import FRAME, H, W, ScriptedBackend, box_mask

from hqsmem_ros.core.depth import DepthConfig, Intrinsics
from hqsmem_ros.core.session import TrackingSession
from hqsmem_ros.core.targets import Rejection
from hqsmem_ros.core.tracker import HQSMemConfig, HQSMemTracker, TrackerConfig
from hqsmem_ros.core.types import Target

SMALL = np.zeros((H // 2, W // 2, 3), np.uint8)


def make_session(depth=DepthConfig(), **tracker):
    backend = ScriptedBackend()
    config = HQSMemConfig(TrackerConfig(min_area=4, **{"resolution_change_frames": 2, "fault_limit": 2, **tracker}))
    return TrackingSession(HQSMemTracker(backend, config), depth), backend


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


# -- 3D ---------------------------------------------------------------------------------------------
INTR = Intrinsics(100.0, 100.0, 40.0, 30.0)


def two_plane_depth(near_box, near_m=1.0, far_m=3.0):
    """A wall at ``far_m`` with a box-shaped object at ``near_m`` (float32 metres)."""
    depth = np.full((H, W), far_m, np.float32)
    x0, y0, x1, y1 = near_box
    depth[y0:y1, x0:x1] = near_m
    return depth


def test_a_frame_stepped_with_depth_gets_each_present_objects_position_and_one_without_none():
    session, backend = make_session()
    session.process(FRAME, [Target(1, mask=box_mask(10, 10, 30, 30)), Target(2, mask=box_mask(50, 20, 70, 40))])
    backend.hidden = {2}
    depth = two_plane_depth((12, 10, 32, 30))  # object 1 moves 2 px right per frame (the scripted shift)
    outcome = session.process(FRAME, depth=(depth, INTR))
    one, two = outcome.result.objects
    assert outcome.has_3d and one.box == (12, 10, 32, 30) and not two.present and two.position is None
    # the eroded box's centre back-projected at 1 m: u = 21.5, v = 19.5
    assert one.position.valid and np.allclose(one.position.centroid, ((21.5 - 40) / 100, (19.5 - 30) / 100, 1.0))
    assert one.position.pixels == 16 * 16  # 20x20 eroded by 2 px each side
    assert "depth_3d" in outcome.result.timings
    plain = session.process(FRAME)
    assert not plain.has_3d and plain.result.objects[0].position is None and "depth_3d" not in plain.result.timings


def test_the_sessions_depth_config_applies_and_a_fault_frame_gets_no_3d():
    session, backend = make_session(DepthConfig(min_valid_pixels=1000))
    session.process(FRAME, [Target(1, mask=box_mask(10, 10, 30, 30))])
    (obj,) = session.process(FRAME, depth=(two_plane_depth((0, 0, W, H)), INTR)).result.objects
    assert not obj.position.valid and obj.position.centroid == (0.0, 0.0, 0.0) and obj.position.pixels == 400
    backend.fail_next = True
    fault = session.process(FRAME, depth=(two_plane_depth((0, 0, W, H)), INTR))
    assert not fault.result.ok and not fault.has_3d and all(o.position is None for o in fault.result.objects)


def test_depth_of_another_size_than_the_frame_is_refused_before_tracking():
    session, _ = make_session()
    session.process(FRAME, [Target(1, mask=box_mask(10, 10, 30, 30))])
    with pytest.raises(ValueError, match="depth is 40x30, the frame 80x60"):
        session.step(FRAME, depth=(np.ones((H // 2, W // 2), np.float32), INTR))
    assert session.process(FRAME).result.frame_index == 1  # nothing was stepped
