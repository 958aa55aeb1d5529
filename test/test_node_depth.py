"""3D over DDS: the node as its own process with ``depth.enabled``, the test as another publishing colour
frames, aligned depth and camera_info (core/sequences.py's RGB-D rendering, exact ground truth) in lockstep,
on the real CPU backend. Paired frames carry each object's 3D centroid in ``tracks`` and
``tracks/positions``; an unpaired frame, a frame before any camera_info, a depth image of the wrong size or
encoding and a CameraInfo with a zero focal length each get no 3D or a specific rejection, counted in
/diagnostics, and tracking goes on."""

from __future__ import annotations

import dataclasses
import signal

import numpy as np
import pytest

from dds_helpers import Probe, full_mask, iou, wait_until
from hqsmem_ros.core.depth import Intrinsics
from hqsmem_ros.core.sequences import make_sequence
from hqsmem_ros.ros.params import image_qos_override
from hqsmem_ros.tools import bags

NS = 1_000_000_000
SIZE = (240, 320)
DRIVER = object()  # track(): the frame's true depth as a driver sends it


def stamp(i: int) -> int:
    return (i + 1) * NS // 30


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


@pytest.fixture(scope="module")
def probe(ros_context):
    """The probe with depth and camera_info publishers."""
    p = Probe(ros_context, rgbd=True)
    yield p
    p.close()


def float_depth(depth_m: np.ndarray, stamp_ns: int):
    """A 32FC1 depth Image in metres (the other driver convention)."""
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from dds_helpers import stamp_msg
    h, w = depth_m.shape
    return Image(header=Header(stamp=stamp_msg(stamp_ns), frame_id="camera"), height=h, width=w, encoding="32FC1",
                 is_bigendian=0, step=4 * w, data=np.ascontiguousarray(depth_m, "<f4").tobytes())


def test_paired_unpaired_and_rejected_depth_over_dds(node_process, probe):
    from geometry_msgs.msg import PoseArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    seq = make_sequence("exit_reentry", n_frames=13, size=SIZE, n_objects=2)
    node = node_process("backend:=cpu", "cpu.work_short_side:=96", "depth.enabled:=true",
                        image_qos_override("reliability", "reliable"),
                        image_qos_override("reliability", "reliable", "/depth"),
                        image_qos_override("depth", 4, "/depth"),
                        image_qos_override("reliability", "reliable", "/camera_info"))
    poses: dict[int, PoseArray] = {}
    positions_sub = probe.node.create_subscription(
        PoseArray, "tracks/positions", lambda m: poses.setdefault(stamp_of(m), m),
        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    probe.connect(timeout=60)
    wait_until(lambda: positions_sub.get_publisher_count() > 0, 30, "tracks/positions")
    probe.wait_log("active: 3D from /depth (reliable, keep_last 4)")
    probe.wait_log("active: 3D from /camera_info (reliable, keep_last 1)")
    camera_info = bags.serialize(bags.camera_info_msg(seq.intrinsics, SIZE, 0))

    def track(i, depth=DRIVER, info=None):
        """Frame i after ``depth`` (a message or its bytes; DRIVER: its true depth as 16UC1 mm; None: none)."""
        rgb, _, depth_m = seq.rgbd(i)
        if i == 0:
            probe.send_targets(seq.targets(), stamp(i))
        if depth is DRIVER:
            depth = bags.serialize(bags.depth_msg(depth_m, stamp(i)))
        # acknowledged before the colour frame leaves
        probe.publish_rgbd([(t, m) for t, m in (("depth", depth), ("camera_info", info)) if m is not None])
        expected = len(probe.tracks) + 1
        probe.publish_frame(rgb, stamp(i))
        out = probe.wait_tracks(expected, timeout=30)[-1]
        assert stamp_of(out) == stamp(i) and out.ok and [o.id for o in out.objects] == [1, 2]
        return out

    def assert_3d(i, msg):
        """Every object of a paired frame has a centroid within 2 % of its true range (its mask J >= 0.8);
        tracks/positions carries the same centroids under the image's header."""
        _, masks, depth_m = seq.rgbd(i)
        truth = seq.true_centroids(depth_m, masks)
        for obj in msg.objects:
            assert obj.present and obj.has_position and obj.depth_pixels >= 20, (i, obj.id)
            assert iou(full_mask(obj, SIZE), masks[obj.id]) >= 0.8, (i, obj.id)
            xyz = np.array([obj.position.x, obj.position.y, obj.position.z])
            error = np.linalg.norm(xyz - truth[obj.id]) / np.linalg.norm(truth[obj.id])
            assert error <= 0.02, (i, obj.id, error)
            assert 0 < obj.extent.x and 0 < obj.extent.y and 0 <= obj.extent.z, (i, obj.id)
        pose = wait_until(lambda: poses.get(stamp(i)), 10, f"tracks/positions of frame {i}")
        assert pose.header.frame_id == "camera" and stamp_of(pose) == stamp(i)
        assert [(p.position.x, p.position.y, p.position.z) for p in pose.poses] == \
            [(o.position.x, o.position.y, o.position.z) for o in msg.objects]

    def assert_no_3d(i, msg):
        assert all(o.present and not o.has_position and o.position.z == 0.0 for o in msg.objects), i
        pose = wait_until(lambda: poses.get(stamp(i)), 10, f"tracks/positions of frame {i}")
        assert stamp_of(pose) == stamp(i) and list(pose.poses) == []

    # depth but no camera_info yet: tracking, no 3D
    assert_no_3d(0, track(0))
    probe.wait_log(f"no 3D for the frame stamped {stamp(0) * 1e-9:.9f}: no valid camera_info received yet "
                   "(depth_no_camera_info)")
    # paired frames (16UC1 millimetres; camera_info once, kept)
    assert_3d(1, track(1, info=camera_info))
    for i in range(2, 8):
        assert_3d(i, track(i))
    # no depth of this stamp within the tolerance (the ring's newest is 33 ms older): no 3D, counted
    assert_no_3d(8, track(8, depth=None))
    probe.wait_log(f"no 3D for the frame stamped {stamp(8) * 1e-9:.9f}: no depth frame within 0.02 s of its "
                   "stamp (depth_unpaired)")
    # a depth image of another size than the colour frame: rejected when it pairs
    small = bags.serialize(bags.depth_msg(np.ones((120, 160), np.float32), stamp(9)))
    assert_no_3d(9, track(9, depth=small))
    probe.wait_log("rejected depth: depth is 160x120, the colour frame 320x240 (the depth must be aligned")
    # a depth image of a colour encoding: rejected on arrival, so the frame is unpaired
    wrong = bags.depth_msg(seq.rgbd(10)[2], stamp(10))
    assert_no_3d(10, track(10, depth=bags.serialize(dataclasses.replace(wrong, encoding="mono16"))))
    probe.wait_log("rejected depth: depth encoding 'mono16' is not supported (16UC1, 32FC1)")
    # a CameraInfo with a zero focal length: rejected, the last valid intrinsics stay in use
    uncalibrated = bags.serialize(bags.camera_info_msg(Intrinsics(0.0, 0.0, 160.0, 120.0), SIZE, stamp(11)))
    assert_3d(11, track(11, info=uncalibrated))
    probe.wait_log("rejected camera_info: focal length must be positive (fx=0.0, fy=0.0)")
    # 32FC1 metres
    assert_3d(12, track(12, depth=float_depth(seq.rgbd(12)[2], stamp(12))))

    diag = probe.latest_diagnostics()
    assert (diag["depth_received"], diag["depth_paired"], diag["depth_unpaired"], diag["depth_no_camera_info"]) \
        == ("12", "9", "2", "1"), diag
    assert (diag["rejected_depth.depth_size"], diag["rejected_depth.depth_encoding"],
            diag["rejected_camera_info.camera_info"]) == ("1", "1", "1"), diag
    assert diag["rejected_images_total"] == "0" and diag["frames_processed"] == "13"
    assert int(diag["frames_processed"]) + int(diag["frames_dropped"]) + int(diag["frames_waiting"]) \
        == int(diag["frames_received"]) - int(diag["rejected_images_total"])
    assert float(diag["latency_ms.depth_3d.p50"]) > 0
    probe.node.destroy_subscription(positions_sub)
    assert node.stop(signal.SIGINT) == 0
    assert "Traceback" not in node.stderr, node.stderr
