"""ros/frames.py: which frame the worker takes, which are dropped, where targets start (no DDS)."""

from __future__ import annotations

import threading

import numpy as np
from hypothesis import given, settings, strategies as st

from hqsmem_ros.core.types import Target
from hqsmem_ros.ros.frames import FrameBuffer

FRAME = np.zeros((4, 5, 3), np.uint8)


def push(buf: FrameBuffer, *stamps: int) -> None:
    for s in stamps:
        buf.push(s, f"header {s}", FRAME)


def test_the_worker_takes_the_newest_frame_and_the_skipped_ones_count_as_dropped():
    buf = FrameBuffer(8)
    push(buf, 1, 2, 3)
    job = buf.take(0)
    assert job.frame.stamp_ns == 3 and job.frame.header == "header 3" and job.targets == []
    assert (buf.received, buf.dropped) == (3, 2)
    assert buf.take(0) is None


def test_targets_naming_a_waiting_frame_start_on_it_then_the_newest_follows():
    buf = FrameBuffer(8)
    push(buf, 1, 2, 3)
    assert buf.add_targets(2, [Target(1)]) == "their frame (held, not processed yet)"
    first = buf.take(0)
    assert first.frame.stamp_ns == 2 and [t.obj_id for t in first.targets] == [1]
    assert buf.take(0).frame.stamp_ns == 3
    assert (buf.received, buf.dropped) == (3, 1)


def test_zero_unknown_and_already_processed_stamps_start_on_the_next_frame():
    buf = FrameBuffer(8)
    push(buf, 1)
    buf.take(0)
    assert buf.add_targets(0, [Target(1)]).endswith("zero stamp")
    assert buf.add_targets(77, [Target(2)]).endswith("no held frame has that stamp")
    assert buf.add_targets(1, [Target(3)]).endswith("their frame was already processed")
    assert buf.waiting_ids() == {1, 2, 3}
    push(buf, 2)
    assert [t.obj_id for t in buf.take(0).targets] == [1, 2, 3]


def test_a_frame_pushed_out_of_the_ring_hands_its_targets_to_the_next_frame():
    buf = FrameBuffer(2)
    push(buf, 1)
    buf.add_targets(1, [Target(5)])
    push(buf, 2, 3)  # frame 1 leaves the ring unprocessed
    assert buf.dropped == 1
    job = buf.take(0)
    assert job.frame.stamp_ns == 3 and [t.obj_id for t in job.targets] == [5]


def test_discard_and_clear():
    buf = FrameBuffer(4)
    push(buf, 1, 2)
    buf.add_targets(1, [Target(1), Target(2)])
    buf.add_targets(0, [Target(3)])
    assert buf.discard_targets([2, 3, 9]) == {2, 3}
    assert buf.waiting_ids() == {1}
    buf.clear()
    assert buf.waiting_ids() == set() and buf.take(0) is None and buf.dropped == 2


def test_take_waits_for_a_frame():
    buf = FrameBuffer(4)
    threading.Timer(0.05, push, (buf, 9)).start()
    assert buf.take(5).frame.stamp_ns == 9


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("push"), st.integers(1, 6)),
                          st.tuples(st.just("take"), st.just(0)),
                          st.tuples(st.just("target"), st.integers(0, 6))), max_size=40), st.integers(1, 4))
def test_every_received_frame_is_processed_dropped_or_waiting_and_every_target_starts_once(ops, ring):
    buf = FrameBuffer(ring)
    taken, sent, started, last_seq = 0, 0, [], -1
    for op, value in ops:
        if op == "push":
            push(buf, value)
        elif op == "target":
            sent += 1
            buf.add_targets(value, [Target(sent)])
        elif (job := buf.take(0)) is not None:
            taken += 1
            assert job.frame.seq > last_seq  # frames go forward in arrival order
            last_seq = job.frame.seq
            started += [t.obj_id for t in job.targets]
    waiting = sum(1 for f in buf._ring if f.seq > buf._taken)
    assert buf.received == taken + buf.dropped + waiting
    assert sorted(started + sorted(buf.waiting_ids())) == list(range(1, sent + 1))


def test_target_shape_is_known_for_their_own_frame_or_a_zero_stamp_and_deferred_otherwise():
    buf = FrameBuffer(8)
    assert buf.shape_for(0) is None
    buf.push(1, "old size", np.zeros((6, 8, 3), np.uint8))
    buf.push(2, "new size", np.zeros((3, 4, 3), np.uint8))
    assert buf.shape_for(1) == (6, 8) and buf.shape_for(0) == (3, 4)
    assert buf.shape_for(3) is None  # a frame still in transit may have another size: checked when it starts


def test_targets_for_an_id_already_waiting_replace_it():
    buf = FrameBuffer(4)
    push(buf, 1)
    buf.add_targets(0, [Target(1, "old"), Target(2, "two")])
    buf.add_targets(0, [Target(1, "new")])
    job = buf.take(0.1)
    assert sorted((t.obj_id, t.label) for t in job.targets) == [(1, "new"), (2, "two")]


def test_requeued_targets_yield_to_newer_ones():
    buf = FrameBuffer(4)
    buf.add_targets(0, [Target(1, "newer")])
    buf.requeue([Target(1, "older"), Target(3, "three")])
    push(buf, 1)
    assert sorted((t.obj_id, t.label) for t in buf.take(0.1).targets) == [(1, "newer"), (3, "three")]


def test_a_frame_is_wanted_only_while_the_worker_waits_and_none_is_fresh():
    waits = []
    buf = FrameBuffer(4, on_wait=lambda: waits.append(buf.wants_frame()))
    assert not buf.wants_frame()  # the worker is not waiting yet
    assert buf.take(0.01) is None and waits == [True]  # it waited: the node's executor was told, and wanted one
    assert not buf.wants_frame()  # gave up: the subscription stays out of the wait set again
    threading.Timer(0.05, push, (buf, 1)).start()
    assert buf.take(5).frame.stamp_ns == 1
