"""A hostile or careless client in another process, over DDS: hypothesis draws malformed and hostile
Image, CompressedImage (header-only bombs, truncated and corrupted JPEG/PNG, junk), TargetArray and
service requests. After each batch the node must still be alive, answer the next valid frames, and keep
received = processed + dropped + waiting + rejected_images_total in its own /diagnostics.

The size is bounded for CI (a few dozen examples per strategy); raise HQSMEM_ADVERSARIAL_EXAMPLES to go
further."""

from __future__ import annotations

import itertools
import os
import signal
import struct
import time
import zlib

import cv2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from dds_helpers import stamp_msg, wait_until
from hqsmem_ros.core.sequences import make_sequence
from hqsmem_ros.msg import Target as TargetMsg, TargetArray
from hqsmem_ros.ros.convert import ENCODINGS
from hqsmem_ros.srv import AddTargets, RemoveTargets

SIZE = (96, 128)
NS = 1_000_000_000
SEQ = make_sequence("translation", n_frames=40, size=SIZE, n_objects=1)
EXAMPLES = int(os.environ.get("HQSMEM_ADVERSARIAL_EXAMPLES", "25"))
NODE = ("backend:=cpu", "cpu.work_short_side:=96", "tracker.resolution_change_frames:=3",
        "max_image_pixels:=2000000")
STAMPS = itertools.count(1)  # every message a fresh, later stamp: stamp checks must not hide the other checks
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def next_stamp() -> int:
    return next(STAMPS) * NS // 100


def header() -> Header:
    return Header(stamp=stamp_msg(next_stamp()), frame_id="camera")


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


JPEG = cv2.imencode(".jpg", SEQ.frame(0)[0][:, :, ::-1])[1].tobytes()
PNG = cv2.imencode(".png", SEQ.frame(0)[0][:, :, ::-1])[1].tobytes()

raw_images = st.builds(
    lambda enc, w, h, step, n, big, data: Image(
        header=header(), encoding=enc, width=w, height=h, step=step, is_bigendian=big,
        data=bytes(data) * (n // max(len(data), 1) + 1) if data else b""),
    st.sampled_from(list(ENCODINGS) + ["yuv422", "", "32FC1", "16UC1", "bayer_rggb8"]),
    st.one_of(st.integers(0, 200), st.sampled_from([40000, 2**31 - 1])),
    st.one_of(st.integers(0, 200), st.sampled_from([40000, 2**31 - 1])),
    st.integers(0, 1000), st.integers(0, 20000), st.booleans(), st.binary(max_size=64))

compressed_images = st.builds(
    lambda fmt, data: CompressedImage(header=header(), format=fmt, data=data),
    st.sampled_from(["png", "jpeg", "rgb8; jpeg compressed bgr8", "", "webp"]),
    st.one_of(
        st.binary(max_size=300),
        st.builds(png_header_only, st.integers(0, 70000), st.integers(0, 70000)),  # bombs and empties
        st.integers(0, len(JPEG)).map(lambda k: JPEG[:k]),                          # truncated JPEG
        st.integers(0, len(PNG)).map(lambda k: PNG[:k]),                            # truncated PNG
        st.tuples(st.integers(2, len(JPEG) - 1), st.integers(0, 255)).map(          # one byte corrupted
            lambda kv: JPEG[:kv[0]] + bytes([kv[1]]) + JPEG[kv[0] + 1:])))

finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-50, 200))
targets = st.builds(
    lambda tid, has_box, box, mask: TargetMsg(id=tid, label="x", has_box=has_box, x_min=box[0], y_min=box[1],
                                              x_max=box[2], y_max=box[3], mask=mask),
    st.one_of(st.integers(-3, 3), st.integers(-2**31, 2**31 - 1), st.integers(1, 70000)), st.booleans(),
    st.tuples(finite_or_not, finite_or_not, finite_or_not, finite_or_not),
    st.one_of(st.just(Image()), raw_images))
target_arrays = st.builds(lambda ts, zero: TargetArray(header=Header() if zero else header(), targets=ts),
                          st.lists(targets, max_size=8), st.booleans())




def assert_still_tracking(node, probe, publish) -> None:
    """The node is alive, answers valid frames with the sequence's object, and its books balance."""
    assert node.proc.poll() is None, node.stderr
    assert probe.call(Trigger, "reset", Trigger.Request(), timeout=5).success  # whatever the fuzzing started
    probe.tracks.clear()
    probe.send_targets(SEQ.targets(), 0)
    for i in range(3):
        expected = len(probe.tracks) + 1
        wait_until(lambda: publish(SEQ.frame(i)[0]) or len(probe.tracks) >= expected, 30,
                   f"tracks for valid frame {i}")
    assert [o.id for o in probe.tracks[-1].objects] == [1] and probe.tracks[-1].objects[0].present

    def balanced():
        d = probe.latest_diagnostics()
        return int(d["frames_received"]) == int(d["frames_processed"]) + int(d["frames_dropped"]) \
            + int(d["frames_waiting"]) + int(d["rejected_images_total"]) and d
    diag = wait_until(balanced, 10, "received = processed + dropped + waiting + rejected_images_total")
    assert int(diag["rejected_images_total"]) > 0
    assert "Traceback" not in node.stderr, node.stderr


@pytest.mark.timeout(600)
def test_raw_images_targets_and_services_from_a_hostile_process(node_process, probe):
    node = node_process(*NODE, "qos_overrides./image.subscription.reliability:=reliable")
    probe.connect(timeout=90)
    probe.publish_frame(SEQ.frame(0)[0], next_stamp())  # the tracked size
    probe.wait_tracks(1, timeout=30)

    @FUZZ
    @given(images=st.lists(raw_images, min_size=1, max_size=4), arrays=st.lists(target_arrays, max_size=2))
    def flood(images, arrays):
        for msg in images:
            probe.image_pub.publish(msg)
        for msg in arrays:
            probe.targets_pub.publish(msg)
    flood()

    @FUZZ
    @given(request=st.one_of(
        st.builds(lambda a: ("add", a), target_arrays),
        st.builds(lambda ids: ("remove", ids), st.one_of(
            st.lists(st.integers(-2**31, 2**31 - 1), max_size=50),
            st.integers(4000, 6000).map(lambda n: list(range(n))))),
        st.just(("reset", None))))
    def services(request):
        kind, value = request
        if kind == "add":
            answer = probe.call(AddTargets, "add_targets", AddTargets.Request(targets=value), timeout=5)
            assert len(answer.accepted_ids) + len(answer.rejections) == len(value.targets)  # each answered
        elif kind == "remove":
            answer = probe.call(RemoveTargets, "remove_targets", RemoveTargets.Request(ids=value), timeout=5)
            assert answer.success or answer.unknown_ids or "over the limit of 4096" in answer.message
        else:
            assert probe.call(Trigger, "reset", Trigger.Request(), timeout=5).success
    services()

    assert_still_tracking(node, probe, lambda rgb: probe.publish_frame(rgb, next_stamp()))
    assert node.stop(signal.SIGINT) == 0


@pytest.mark.timeout(600)
def test_compressed_bombs_truncations_and_junk_from_a_hostile_process(node_process, probe):
    node = node_process(*NODE, "compressed:=true", "qos_overrides./image/compressed.subscription.reliability:=reliable")
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    pub = probe.node.create_publisher(CompressedImage, "image/compressed",
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

    def publish_valid(rgb):
        png = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()
        pub.publish(CompressedImage(header=header(), format="png", data=png))

    try:
        wait_until(lambda: pub.get_subscription_count() > 0 and probe.targets_pub.get_subscription_count() > 0,
                   90, "the compressed image subscription")
        wait_until(lambda: publish_valid(SEQ.frame(0)[0]) or probe.tracks, 30, "the first frame")

        @FUZZ
        @given(images=st.lists(compressed_images, min_size=1, max_size=4))
        def flood(images):
            for msg in images:
                pub.publish(msg)
        flood()
        pub.publish(CompressedImage(header=header(), format="png", data=png_header_only(40000, 40000)))
        wait_until(lambda: "rejected_images.too_large" in probe.latest_diagnostics(), 10, "the bomb's rejection")
        assert_still_tracking(node, probe, publish_valid)
    finally:
        probe.node.destroy_publisher(pub)
    assert node.stop(signal.SIGINT) == 0


@pytest.mark.timeout(300)
def test_a_flood_waits_in_the_subscription_queue_and_every_frame_is_counted(node_process, probe):
    """Valid frames as fast as another process can publish them, on the default best-effort subscription:
    the executor takes only the frames the worker takes at once; the others are overwritten in the queue and
    counted from the publisher's sequence numbers, and the books still balance."""
    node = node_process(*NODE)
    probe.connect(timeout=90)
    probe.send_targets(SEQ.targets(), 0)
    probe.publish_frame(SEQ.frame(0)[0], next_stamp())  # the first frame: the sequence numbers count from it
    probe.wait_tracks(1, timeout=30)
    sent = 400
    for i in range(sent):
        probe.publish_frame(SEQ.frame(i % len(SEQ))[0], next_stamp())
    time.sleep(1.0)
    # One more once the flood is over: frames sent after the last one received could not be counted.
    probe.publish_frame(SEQ.frame(1)[0], next_stamp())

    def settled():
        d = probe.latest_diagnostics()
        return int(d["frames_waiting"]) == 0 and \
            int(d["frames_received"]) + int(d["frames_dropped_in_queue"]) == sent + 2 and d
    diag = wait_until(settled, 20, "every frame sent taken or counted as overwritten in the queue")
    received = int(diag["frames_received"])
    assert received < sent // 2 and int(diag["frames_dropped_in_queue"]) > sent // 2  # not converted, counted
    assert received == int(diag["frames_processed"]) + int(diag["frames_dropped"]) \
        + int(diag["rejected_images_total"])
    assert len(probe.tracks) == int(diag["frames_processed"])  # one output per processed frame
    assert [o.id for o in probe.tracks[-1].objects] == [1] and probe.tracks[-1].objects[0].present
    assert node.proc.poll() is None, node.stderr
