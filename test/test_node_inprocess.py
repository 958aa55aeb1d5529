"""The node and a probe node in one process, over real DDS. The tracker runs on the oracle backend
(dds_helpers.py), so every check on stamps, masks and absence is exact and fast."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter

from dds_helpers import full_mask, iou, oracle_factory, targets_msg, wait_until
from hqsmem_ros.core.sequences import make_sequence
from hqsmem_ros.core.types import Target
from hqsmem_ros.ros.node import SUCCESS, TrackerNode
from hqsmem_ros.srv import AddTargets, RemoveTargets
from std_srvs.srv import Trigger

SIZE = (120, 160)
SEQ = make_sequence("exit_reentry", n_frames=60, size=SIZE, n_objects=2)
NS = 1_000_000_000
RELIABLE_IMAGES = "qos_overrides./image.subscription.reliability"  # lockstep tests lose no frame


class Running:
    """A TrackerNode spinning on its own executor thread (as in main())."""

    count = 0
    open: set[Running] = set()  # not closed yet: the guard below closes what a failed test left

    def __init__(self, context, overrides: dict, sequence=SEQ, start: bool = True):
        from rclpy.executors import SingleThreadedExecutor
        # A fresh node name per test: rcl's /rosout publisher is per name and a destroyed node's
        # late finalisation would unregister the next one's.
        Running.count += 1
        self.node = TrackerNode(context=context, tracker_factory=oracle_factory(sequence),
                                cli_args=["--ros-args", "-r", f"__node:=hqsmem_tracker_{Running.count}"],
                                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        Running.open.add(self)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        if start:
            assert self.node.start()

    def _spin(self):
        from rclpy.executors import ExternalShutdownException
        try:
            self.executor.spin()
        except ExternalShutdownException:  # the context was shut down under it, as main() expects too
            pass

    def close(self):
        Running.open.discard(self)
        self.executor.shutdown()
        self.node.close()


@pytest.fixture(autouse=True)
def no_node_outlives_its_test():
    """A node left running would answer the next tests' frames, and its worker thread would keep the
    process from exiting."""
    yield
    left = list(Running.open)
    for running in left:
        running.close()
    assert not left, f"{len(left)} node(s) left running"


@pytest.fixture
def tracker(ros_context, probe):
    started = []

    def launch(sequence=SEQ, start=True, **overrides):
        overrides = {RELIABLE_IMAGES: "reliable", **overrides}
        started.append(Running(ros_context, overrides, sequence, start))
        if start:
            probe.connect()
        return started[-1].node

    probe.clear()
    yield launch
    for r in started:
        r.close()


def publish_sequence(probe, frames, targets_on=0):
    """Publish frames one at a time, each waiting for its tracks message; the sequence's targets go
    just before frame ``targets_on`` with its stamp (so they start on it)."""
    for i in frames:
        stamp = (i + 1) * NS // 10
        if i == targets_on:
            probe.send_targets(SEQ.targets(), stamp)
        expected = len(probe.tracks) + 1
        probe.publish_frame(SEQ.frame(i)[0], stamp)
        probe.wait_tracks(expected)


def test_tracks_follow_the_objects_with_the_input_stamps_and_report_absence(tracker, probe):
    tracker()
    publish_sequence(probe, list(range(60)))
    tracks = probe.wait_tracks(60)
    assert [t.header.stamp.sec * NS + t.header.stamp.nanosec for t in tracks] == [(i + 1) * NS // 10 for i in range(60)]
    assert all(t.header.frame_id == "camera" and t.ok for t in tracks)
    for i, msg in enumerate(tracks):
        _, truth = SEQ.frame(i)
        objects = {o.id: o for o in msg.objects}
        assert set(objects) == {1, 2}
        for oid, obj in objects.items():
            visible = truth[oid].sum() >= 16
            assert obj.present == visible, (i, oid)
            if visible:
                assert iou(full_mask(obj, SIZE), truth[oid]) > 0.99
                assert obj.mask.encoding == "mono8" and obj.mask.width == obj.roi.width
            else:
                assert obj.mask.width == 0 and obj.roi.width == 0
    assert not tracks[50].objects[0].present and tracks[10].objects[0].present  # object 1 leaves
    assert [o.label for o in tracks[0].objects] == [t.label for t in SEQ.targets()]


def test_every_frame_is_processed_or_dropped_and_each_processed_frame_yields_one_tracks(tracker, probe):
    node = tracker()
    probe.send_targets(SEQ.targets(), 0)
    for i in range(40):  # a burst: faster than the worker, so some frames are dropped
        probe.publish_frame(SEQ.frame(i % 20)[0], (i + 1) * NS // 100)
    # The image subscription keeps one sample (sensor-data QoS): DDS may drop some before the node
    # sees them; what the node receives is accounted for.
    diag = wait_until(lambda: (d := probe.latest_diagnostics()) and d["frames_waiting"] == "0"
                      and int(d["frames_received"]) > 0 and d, 15, "the queue to empty")
    received, processed, dropped = (int(diag[k]) for k in ("frames_received", "frames_processed", "frames_dropped"))
    assert processed + dropped == received and processed >= 1
    wait_until(lambda: len(probe.tracks) == processed, 5, "one tracks message per processed frame")
    assert len({(t.header.stamp.sec, t.header.stamp.nanosec) for t in probe.tracks}) == processed
    for key in ("input_fps", "processed_fps", "memory_frames", "objects_present", "objects_absent",
                "backend", "device", "latency_ms.total.p50", "latency_ms.base.p90"):
        assert key in diag
    assert diag["backend"] == "oracle" and diag["objects_present"] == "2"
    assert node.session.tracker.frame_index == processed


@pytest.mark.parametrize("mutate, log", [
    (lambda m: setattr(m, "encoding", "yuv422"), "rejected image: encoding 'yuv422' is not supported (rgb8, bgr8"),
    (lambda m: setattr(m, "step", 3), "rejected image: step 3 is shorter than a rgb8 row"),
    (lambda m: setattr(m, "data", m.data[:-7]), "rejected image: data is"),
    (lambda m: (setattr(m, "width", 0), setattr(m, "step", 0), setattr(m, "data", b"")),
     "rejected image: image is empty"),
])
def test_malformed_images_are_rejected_with_their_reason_and_tracking_goes_on(tracker, probe, mutate, log):
    from dds_helpers import image_msg
    tracker()
    publish_sequence(probe, [0, 1])
    bad = image_msg(SEQ.frame(2)[0], 99 * NS)
    mutate(bad)
    probe.image_pub.publish(bad)
    probe.wait_log(log)
    publish_sequence(probe, [2, 3], targets_on=-1)
    assert len(probe.tracks) == 4 and probe.tracks[-1].objects[0].present


def test_malformed_targets_are_rejected_one_by_one(tracker, probe):
    tracker(label_encoding="mono8")
    publish_sequence(probe, [0], targets_on=-1)
    stamp = probe.tracks[0].header.stamp.sec * NS + probe.tracks[0].header.stamp.nanosec
    good = SEQ.targets()[0]
    wrong_mask = np.zeros((10, 10), bool)
    wrong_mask[2:5, 2:5] = True
    bad = [
        Target(2, box=(-50.0, -50.0, -10.0, -10.0)),
        Target(3, box=(float("nan"), 0.0, 10.0, 10.0)),
        Target(4, box=(10.0, 10.0, 10.0, 30.0)),
        Target(5, mask=np.zeros(SIZE, bool)),
        Target(6, mask=wrong_mask),
        Target(7, box=(1.0, 1.0, 20.0, 20.0)), Target(7, box=(1.0, 1.0, 20.0, 20.0)),
        Target(300, box=(1.0, 1.0, 20.0, 20.0)),
        Target(0, box=(1.0, 1.0, 20.0, 20.0)),
    ]
    response = probe.call(AddTargets, "add_targets", AddTargets.Request(targets=targets_msg([good] + bad, stamp)))
    assert not response.success and list(response.accepted_ids) == [1]
    expected = ["target 2: box", "lies outside the 160x120 image", "target 3: box", "non-finite",
                "target 4: box", "zero or negative area", "target 5: mask is empty",
                "target 6: mask is 10x10, image is 160x120",
                "target 7: id appears 2 times in one message", "target 300: id is outside 1..255",
                "target 0: id is outside 1..255"]
    text = "\n".join(response.rejections)
    for piece in expected:
        assert piece in text
    assert len(response.rejections) == 9
    probe.wait_log("rejected target 5: mask is empty (and 1 more: mask)")  # one line per reason
    publish_sequence(probe, [1, 2], targets_on=-1)
    assert [o.id for o in probe.tracks[-1].objects] == [1]
    diag = probe.latest_diagnostics()
    assert (diag["rejected_targets.box"], diag["rejected_targets.mask"], diag["rejected_targets.id_range"]) \
        == ("3", "2", "2")


def test_services_add_remove_readd_and_reset(tracker, probe):
    tracker()
    publish_sequence(probe, [0], targets_on=-1)
    one, two = SEQ.targets()
    assert probe.call(AddTargets, "add_targets", AddTargets.Request(targets=targets_msg([one, two], 0))).success
    publish_sequence(probe, [1], targets_on=-1)
    assert [o.id for o in probe.tracks[-1].objects] == [1, 2]

    response = probe.call(RemoveTargets, "remove_targets", RemoveTargets.Request(ids=[2, 9]))
    assert not response.success and list(response.removed_ids) == [2] and list(response.unknown_ids) == [9]
    probe.wait_log("rejected remove: 1 unknown id: 9")
    publish_sequence(probe, [2], targets_on=-1)
    assert [o.id for o in probe.tracks[-1].objects] == [1]

    readd = Target(2, "again", mask=SEQ.frame(3)[1][2])
    assert probe.call(AddTargets, "add_targets", AddTargets.Request(targets=targets_msg([readd], 0))).success
    publish_sequence(probe, [3], targets_on=-1)
    objects = {o.id: o for o in probe.tracks[-1].objects}
    assert objects[2].label == "again" and iou(full_mask(objects[2], SIZE), SEQ.frame(3)[1][2]) > 0.99

    assert probe.call(Trigger, "reset", Trigger.Request()).success
    publish_sequence(probe, [0], targets_on=-1)  # an earlier stamp again: a reset stream may replay it
    assert list(probe.tracks[-1].objects) == [] and probe.tracks[-1].frame_index == 0


def test_a_target_stamped_with_the_frame_waiting_in_the_queue_starts_on_that_frame(tracker, probe):
    node = tracker()
    with node.session._lock:  # hold the worker, busy with frame 0: frames 1..3 wait in the subscription's queue
        probe.publish_frame(SEQ.frame(0)[0], NS)
        wait_until(lambda: node._buffer.received == 1, 5, "frame 0 taken")
        for i in range(1, 4):
            probe.publish_frame(SEQ.frame(i)[0], (i + 1) * NS)
        probe.targets_pub.publish(targets_msg(SEQ.targets(), 4 * NS))  # named after frame 3, the newest
        probe.wait_log("(stamp 4.000000000) start on the next frame processed: no held frame has that stamp")
        time.sleep(0.3)  # frame 3 reaches the node's reader (keep last 1: it overwrites frames 1 and 2)
    wait_until(lambda: probe.tracks and probe.tracks[-1].header.stamp.sec == 4, 5, "the newest frame's tracks")
    assert [t.header.stamp.sec for t in probe.tracks] == [1, 4]
    assert [o.id for o in probe.tracks[-1].objects] == [1, 2]  # the targets started on frame 3,
    assert iou(full_mask(probe.tracks[-1].objects[0], SIZE), SEQ.targets()[0].mask) > 0.99  # with the given mask


def test_dynamic_parameters_apply_and_fixed_ones_are_refused_with_a_reason(tracker, probe):
    node = tracker()
    result = node.set_parameters([Parameter("tracker.min_area", value=100)])[0]
    assert result.successful and node.session.tracker.config.tracker.min_area == 100
    result = node.set_parameters([Parameter("memory.capacity", value=3)])[0]
    assert result.successful and node.session.tracker.config.memory.capacity == 3
    result = node.set_parameters([Parameter("backend", value="cpu")])[0]
    assert not result.successful and "backend cannot change while the node is configured" in result.reason
    result = node.set_parameters([Parameter("memory.capacity", value=100000)])[0]
    assert not result.successful
    result = node.set_parameters([Parameter("autostart", value=False)])[0]
    assert not result.successful and "read-only" in result.reason
    assert node.get_parameter("backend").value == "auto"


def test_a_bad_parameter_fails_configure_with_a_specific_message(tracker, probe):
    node = tracker(start=False, **{"memory.capacity": 100000, "label_encoding": "mono12"})
    assert node.trigger_configure() != SUCCESS
    probe.wait_log("configure failed: parameter memory.capacity")
    probe.wait_log("configure failed: parameter label_encoding")
    assert node.set_parameters([Parameter("memory.capacity", value=4),
                                Parameter("label_encoding", value="mono8")])[0].successful
    assert node.trigger_configure() == SUCCESS and node.session.tracker.config.memory.capacity == 4


def test_faults_are_published_and_too_many_reset_and_restart_from_the_last_good_masks(tracker, probe):
    tracker(**{"tracker.fault_limit": 3})
    publish_sequence(probe, [0, 1])
    noise = np.random.default_rng(0).integers(0, 255, (*SIZE, 3), dtype=np.uint8)
    for k in range(3):  # frames the oracle backend does not know: the tracker faults
        probe.publish_frame(noise, (10 + k) * NS)
        probe.wait_tracks(3 + k)
    faulted = probe.tracks[2:5]
    assert all(not t.ok and "LookupError" in t.status for t in faulted)
    assert all(not o.present for t in faulted for o in t.objects)
    probe.wait_log("3 consecutive tracker faults")
    probe.wait_log("restarting objects [1, 2] from their last good masks")
    publish_sequence(probe, [2], targets_on=-1)
    assert probe.tracks[-1].ok and [o.id for o in probe.tracks[-1].objects] == [1, 2]
    assert probe.latest_diagnostics()["fault_resets"] == "1"


def test_a_stray_frame_of_another_size_is_refused_and_a_persistent_one_restarts_tracking(tracker, probe):
    small = make_sequence("translation", n_frames=3, size=(60, 80), n_objects=1)
    tracker(**{"tracker.resolution_change_frames": 2})
    publish_sequence(probe, [0, 1])
    probe.publish_frame(np.zeros((1, 1, 3), np.uint8), 40 * NS)  # one stray frame: refused, objects kept
    probe.wait_log("rejected image: image is 1x1 while tracking 160x120: refused until the new size comes 2 times")
    publish_sequence(probe, [2], targets_on=-1)
    assert [o.id for o in probe.tracks[-1].objects] == [1, 2]
    probe.send_targets(small.targets(), 0)  # zero stamp: checked against the frame it starts on
    probe.publish_frame(small.frame(0)[0], 50 * NS)  # the first of the new size: refused
    # (the image subscription keeps one message: let this one arrive before the next)
    wait_until(lambda: probe.latest_diagnostics().get("rejected_images.resolution_mismatch") == "2", 10,
               "the second refusal")
    probe.publish_frame(small.frame(1)[0], 51 * NS)  # the second in a row: accepted, tracking restarts
    probe.wait_log("resolution changed from 160x120 to 80x60: tracking reset, objects 1..2 dropped")
    tracks = probe.wait_tracks(4)
    assert [(o.id, o.present) for o in tracks[-1].objects] == [(1, True)]
    assert iou(full_mask(tracks[-1].objects[0], (60, 80)), small.frame(0)[1][1]) > 0.99  # its init mask
    diag = probe.latest_diagnostics()
    assert diag["resolution_resets"] == "1" and diag["rejected_images.resolution_mismatch"] == "2"
    assert len(probe.tracks) == 4  # refused frames yield no output, and are counted instead
    assert int(diag["frames_processed"]) + int(diag["frames_dropped"]) + int(diag["frames_waiting"]) \
        + int(diag["rejected_images_total"]) == int(diag["frames_received"]) == 6


def test_one_node_s_qos_override_does_not_change_the_next_node_s_default(tracker, probe, ros_context):
    tracker()  # reliable, through the override
    plain = Running(ros_context, {})  # no override: sensor-data QoS
    try:
        probe.wait_log("active: tracking /image (best_effort, keep_last 1)")
    finally:
        plain.close()


def test_images_over_max_image_pixels_are_refused_from_their_header(tracker, probe):
    from dds_helpers import image_msg
    tracker(max_image_pixels=160 * 120)
    publish_sequence(probe, [0])
    big = image_msg(np.zeros((121, 160, 3), np.uint8), 5 * NS)
    probe.image_pub.publish(big)
    probe.wait_log("rejected image: image is 160x121 = 19360 pixels, over max_image_pixels=19200")
    publish_sequence(probe, [1], targets_on=-1)
    assert probe.latest_diagnostics()["rejected_images.too_large"] == "1"


def test_an_unexpected_exception_in_a_callback_is_counted_and_the_node_goes_on(tracker, probe, monkeypatch):
    from hqsmem_ros.ros import convert
    node = tracker()
    publish_sequence(probe, [0])
    real = convert.image_shape
    calls = []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected")
        return real(*args, **kwargs)
    monkeypatch.setattr(convert, "image_shape", broken_once)
    probe.publish_frame(SEQ.frame(1)[0], 2 * NS // 10)
    probe.wait_log("on_image: internal_error: RuntimeError: injected")
    monkeypatch.setattr(node._buffer, "discard_targets", lambda ids: 1 / 0)
    response = probe.call(RemoveTargets, "remove_targets", RemoveTargets.Request(ids=[1]))
    assert not response.success and "internal_error: ZeroDivisionError" in response.message
    status = node._stats.status
    monkeypatch.setattr(node._stats, "status", lambda *args: (monkeypatch.setattr(node._stats, "status", status),
                                                              1 / 0))  # the diagnostics timer, once
    probe.wait_log("publish_diagnostics: internal_error: ZeroDivisionError")
    publish_sequence(probe, [2], targets_on=-1)
    assert [o.id for o in probe.tracks[-1].objects] == [1, 2]
    diag = probe.latest_diagnostics()
    assert diag["rejected_images.internal_error"] == "1" and diag["rejected_requests.internal_error"] == "1"
    assert diag["rejected_timers.internal_error"] == "1"


def test_targets_for_one_id_before_a_frame_merge_and_add_targets_answers_max_objects_now(tracker, probe):
    tracker(**{"tracker.max_objects": 2})
    publish_sequence(probe, [0], targets_on=-1)
    first, second = SEQ.targets()
    probe.send_targets([first], 0)
    probe.send_targets([first, second], 0)  # id 1 again before the next frame: the latest wins
    many = [Target(i, box=(1.0, 1.0, 20.0, 20.0)) for i in range(3, 40)]
    response = probe.call(AddTargets, "add_targets", AddTargets.Request(targets=targets_msg(many, 0)))
    assert list(response.accepted_ids) == [] and len(response.rejections) == 37
    assert "target 3: max_objects=2 already tracked or waiting" in response.rejections[0]
    probe.wait_log("rejected target 3: max_objects=2 already tracked or waiting (and 36 more: max_objects)")
    publish_sequence(probe, [1], targets_on=-1)
    assert [o.id for o in probe.tracks[-1].objects] == [1, 2]
    assert not any("target 1" in line or "target 2" in line for line in probe.logs if "rejected" in line)


def test_huge_requests_are_answered_at_once_and_logged_in_one_line(tracker, probe):
    import time
    tracker()
    publish_sequence(probe, [0])
    start = time.monotonic()
    response = probe.call(RemoveTargets, "remove_targets", RemoveTargets.Request(ids=list(range(1, 100_001))))
    assert time.monotonic() - start < 1.0
    assert not response.success and "100000 ids in one request, over the limit of 4096" in response.message
    response = probe.call(RemoveTargets, "remove_targets", RemoveTargets.Request(ids=list(range(3, 4000))))
    assert list(response.unknown_ids) == list(range(3, 4000))
    probe.wait_log("rejected remove: 3997 unknown ids: 3..3999")
    assert sum("unknown ids" in line for line in probe.logs) == 1


def test_lifecycle_deactivate_stops_processing_and_cleanup_releases_the_tracker(tracker, probe):
    node = tracker()
    publish_sequence(probe, [0, 1])
    assert node.trigger_deactivate() == SUCCESS
    wait_until(lambda: probe.image_pub.get_subscription_count() == 0, 5, "the image subscription to go")
    assert node.trigger_cleanup() == SUCCESS and node.session is None
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    probe.connect()
    publish_sequence(probe, [0], targets_on=0)
    assert probe.tracks[-1].frame_index == 0


def test_overlay_and_label_image_are_published_to_subscribers(tracker, probe):
    from sensor_msgs.msg import Image
    from hqsmem_ros.ros.convert import image_to_array
    tracker()
    got = {"tracks/overlay": [], "tracks/label_image": []}
    subs = [probe.node.create_subscription(Image, topic, into.append, 10) for topic, into in got.items()]
    try:
        wait_until(lambda: probe.node.count_publishers("tracks/overlay") and
                   all(probe.node.count_subscribers(t) for t in got), 5, "output subscriptions")
        publish_sequence(probe, [0])
        wait_until(lambda: all(got.values()), 5, "overlay and label image")
        overlay, labels = got["tracks/overlay"][0], got["tracks/label_image"][0]
        assert overlay.encoding == "bgr8" and labels.encoding == "mono16"
        truth = SEQ.frame(0)[1]
        label_px = image_to_array(labels)
        assert (label_px == 1).sum() == truth[1].sum() and set(np.unique(label_px)) == {0, 1, 2}
        assert overlay.header.stamp == probe.tracks[0].header.stamp
    finally:
        for s in subs:
            probe.node.destroy_subscription(s)


def test_duplicate_and_older_stamps_are_rejected_and_a_restarted_clock_is_accepted(tracker, probe):
    tracker()
    probe.send_targets(SEQ.targets(), 0)

    def publish(i, stamp_ns, processed: bool):
        expected = len(probe.tracks) + processed
        probe.publish_frame(SEQ.frame(i)[0], stamp_ns)
        return probe.wait_tracks(expected)[-1] if processed else None

    publish(0, 20 * NS, True)
    publish(1, 20 * NS, False)
    probe.wait_log("rejected image: stamp 20.000000000 repeats the last accepted image's")
    publish(1, 19 * NS + NS // 2, False)
    probe.wait_log("rejected image: stamp 19.500000000 is older than the last accepted image's (20.000000000)")
    publish(1, 20 * NS + NS // 10, True)
    publish(2, 3 * NS, True)  # 17 s back: a bag loop, not reordering
    probe.wait_log("image stamp jumped back from 20.100000000 to 3.000000000")
    publish(3, 0, True)  # unstamped images are never out of order
    last = publish(4, 0, True)
    assert len(probe.tracks) == 5 and [o.present for o in last.objects] == [True, True]
    diag = probe.latest_diagnostics()
    assert (diag["rejected_images.duplicate_stamp"], diag["rejected_images.old_stamp"],
            diag["stamp_jumps_back"]) == ("1", "1", "1")
    assert int(diag["frames_received"]) == 7 and diag["frames_processed"] == "5"


def test_a_flood_of_images_waits_in_the_queue_and_every_drop_is_counted(tracker, probe):
    node = tracker()
    probe.send_targets(SEQ.targets(), 0)
    sent = 30
    with node.session._lock:  # the worker is stuck on its first frame: the others flood the subscription
        probe.publish_frame(SEQ.frame(0)[0], NS // 100)
        wait_until(lambda: node._buffer.received == 1, 5, "frame 0 taken")
        for i in range(1, sent):
            probe.publish_frame(SEQ.frame(i)[0], (i + 1) * NS // 100)
        time.sleep(0.3)  # they reach the node's reader, each overwriting the one before (keep last 1)
        assert node._buffer.received == 1  # none taken or converted while the worker could not take it
    diag = wait_until(lambda: (d := probe.latest_diagnostics()) and d["frames_processed"] == "2" and d, 10,
                      "the newest frame processed")
    assert {k: int(diag[k]) for k in ("frames_received", "frames_dropped", "frames_waiting",
                                      "frames_dropped_in_queue")} == {
        "frames_received": 2, "frames_dropped": 0, "frames_waiting": 0, "frames_dropped_in_queue": sent - 2}
    wait_until(lambda: len(probe.tracks) == 2, 5, "one tracks message per processed frame")
    assert probe.tracks[-1].header.stamp.nanosec == sent * NS // 100  # the newest frame is processed last


def test_a_target_for_a_tracked_id_re_initialises_that_object(tracker, probe):
    tracker()
    publish_sequence(probe, [0, 1])
    again = Target(1, "moved", mask=SEQ.frame(2)[1][2])  # object 1 now follows object 2's region
    assert probe.call(AddTargets, "add_targets", AddTargets.Request(targets=targets_msg([again], 0))).success
    publish_sequence(probe, [2], targets_on=-1)
    objects = {o.id: o for o in probe.tracks[-1].objects}
    assert set(objects) == {1, 2} and objects[1].label == "moved"
    assert iou(full_mask(objects[1], SIZE), SEQ.frame(2)[1][2]) > 0.99


def test_a_shutdown_during_a_frame_ends_the_worker_quietly(probe, monkeypatch):
    """SIGINT/SIGTERM shut the context down while the worker may be mid-frame: its publish then fails,
    and the worker must end without a traceback (main() cleans up)."""
    import rclpy
    from rclpy.context import Context
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    context = Context()
    rclpy.init(context=context)
    running = Running(context, {RELIABLE_IMAGES: "reliable"})
    node = running.node
    try:
        probe.connect()
        probe.clear()
        # The node has its own context, so its own DDS participant. In one CI run its first frame was not taken
        # within 5 s (likely sent before the node's reader knew the probe's writer), so frames go until one
        # is answered.
        sent = 0
        while not probe.tracks:
            assert sent < 40, "no frame answered"
            sent += 1
            probe.publish_frame(SEQ.frame(0)[0], sent * NS)
            time.sleep(0.5)
        wait_until(lambda: node._buffer.wants_frame() and node._buffer.received == len(probe.tracks), 5,
                   "the worker to wait for the next frame")
        with node.session._lock:  # the worker takes the frame and waits here
            probe.publish_frame(SEQ.frame(1)[0], (sent + 1) * NS)
            wait_until(lambda: node._buffer.received == len(probe.tracks) + 1, 5, "the frame")
            rclpy.try_shutdown(context=context)
        wait_until(lambda: node._worker.done(), 5, "the worker to end")
    finally:
        rclpy.try_shutdown(context=context)
        running.close()
    assert thread_errors == []


def test_an_error_outside_the_tracker_is_logged_and_the_next_frame_goes_on(tracker, probe, monkeypatch):
    from hqsmem_ros.ros import convert
    node = tracker()
    publish_sequence(probe, [0])
    real, calls = convert.result_to_msg, []

    def fails_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("cannot build tracks")
        return real(*args)

    monkeypatch.setattr(convert, "result_to_msg", fails_once)
    probe.publish_frame(SEQ.frame(1)[0], 5 * NS)
    probe.wait_log("failed outside the tracker: RuntimeError: cannot build tracks")
    publish_sequence(probe, [2], targets_on=-1)
    assert len(probe.tracks) == 2 and not node._worker.done()
    assert probe.latest_diagnostics()["frames_processed"] == "3"
