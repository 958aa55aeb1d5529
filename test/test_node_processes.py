"""The node as its own process (``python -m hqsmem_ros.ros.node``), the test as another, over DDS on
this machine. The tracking test runs the real CPU backend end to end on small frames."""

from __future__ import annotations

import signal
import time


from dds_helpers import full_mask, image_msg, iou, targets_msg, wait_until
from hqsmem_ros.core.sequences import make_sequence
from hqsmem_ros.core.types import Target
from hqsmem_ros.ros.params import image_qos_override
from hqsmem_ros.srv import AddTargets, RemoveTargets
from std_srvs.srv import Trigger

NS = 1_000_000_000
SIZE = (240, 320)


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def test_real_cpu_backend_end_to_end_with_rejections_services_and_sigint(node_process, probe):
    seq = make_sequence("exit_reentry", n_frames=60, size=SIZE, n_objects=2)
    node = node_process("backend:=cpu", "cpu.work_short_side:=144", image_qos_override("reliability", "reliable"))
    probe.connect(timeout=60)  # the node imports torch and builds the model first
    probe.wait_log("backend cpu: backend=cpu was requested")

    def track(i, targets=()):
        stamp = (i + 1) * NS // 30
        if targets:
            probe.send_targets(targets, stamp)
        expected = len(probe.tracks) + 1
        probe.publish_frame(seq.frame(i)[0], stamp)
        return probe.wait_tracks(expected, timeout=30)[-1]

    # object 1 walks out of the picture at about frame 27 (ground truth empty from there on)
    results = {i: track(i, seq.targets() if i == 0 else ()) for i in list(range(0, 12)) + list(range(28, 32))}
    for i, msg in results.items():
        assert stamp_of(msg) == (i + 1) * NS // 30 and msg.ok
        truth = seq.frame(i)[1]
        objects = {o.id: o for o in msg.objects}
        assert set(objects) == {1, 2}
        if i < 12:
            assert objects[1].present and iou(full_mask(objects[1], SIZE), truth[1]) > 0.5, i
        else:
            assert truth[1].sum() == 0 and not objects[1].present, i
        assert objects[2].present and iou(full_mask(objects[2], SIZE), truth[2]) > 0.3, i

    # malformed inputs: a specific log line each, and tracking goes on
    bad = image_msg(seq.frame(32)[0], 99 * NS)
    bad.encoding = "yuv422"
    probe.image_pub.publish(bad)
    probe.wait_log("rejected image: encoding 'yuv422' is not supported (rgb8, bgr8")
    probe.targets_pub.publish(targets_msg([Target(3, box=(400.0, 10.0, 500.0, 50.0))], 0))
    probe.wait_log("targets 3 (stamp 0.000000000) start on the next frame processed")  # checked on that frame
    assert [o.id for o in track(32).objects] == [1, 2]
    probe.wait_log("rejected target 3: box (400.0, 10.0, 500.0, 50.0) lies outside the 320x240 image")

    # services: remove, re-add, reset
    removed = probe.call(RemoveTargets, "remove_targets", RemoveTargets.Request(ids=[1]))
    assert removed.success and list(removed.removed_ids) == [1]
    assert [o.id for o in track(33).objects] == [2]
    readd = Target(1, "back", mask=seq.frame(34)[1][2])  # any visible region will do
    assert probe.call(AddTargets, "add_targets", AddTargets.Request(targets=targets_msg([readd], 0))).success
    assert [o.label for o in track(34).objects] == [seq.targets()[1].label, "back"]
    assert probe.call(Trigger, "reset", Trigger.Request()).success
    assert list(track(35).objects) == []

    diag = probe.latest_diagnostics()
    assert int(diag["frames_processed"]) + int(diag["frames_dropped"]) + int(diag["frames_waiting"]) \
        == int(diag["frames_received"]) - int(diag["rejected_images_total"])
    assert diag["rejected_images_total"] == diag["rejected_images.encoding"] == "1"
    assert int(diag["frames_processed"]) == len(probe.tracks)
    assert diag["backend"] == "cpu" and diag["rejected_targets.box"] == "1"

    assert node.stop(signal.SIGINT) == 0
    assert "Traceback" not in node.stderr, node.stderr


def test_best_effort_compressed_input_and_sigterm(node_process, probe, ros_context):
    import cv2
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage
    seq = make_sequence("translation", n_frames=3, size=(120, 160), n_objects=1)
    node = node_process("backend:=cpu", "cpu.work_short_side:=96", "compressed:=true")
    pub = probe.node.create_publisher(CompressedImage, "image/compressed",
                                      QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    try:
        wait_until(lambda: pub.get_subscription_count() > 0, 60, "the compressed image subscription")
        probe.wait_log("active: tracking /image/compressed (best_effort, keep_last 1)")
        probe.send_targets(seq.targets(), 0)
        rgb, truth = seq.frame(0)
        png = cv2.imencode(".png", rgb[:, :, ::-1])[1]
        # best effort: repeat until one arrives
        wait_until(lambda: pub.publish(CompressedImage(format="png", data=png.tobytes())) or probe.tracks, 10,
                   "tracks for a compressed frame")
        assert iou(full_mask(probe.tracks[0].objects[0], (120, 160)), truth[1]) > 0.9
        jpeg = bytearray(cv2.imencode(".jpg", seq.frame(1)[0][:, :, ::-1])[1].tobytes())
        jpeg[len(jpeg) // 2:len(jpeg) // 2 + 6] = b"\xff\xd3\xff\xd5\x12\x34"  # libjpeg repairs it
        wait_until(lambda: pub.publish(CompressedImage(format="jpeg", data=bytes(jpeg))) or len(probe.tracks) > 1, 10,
                   "tracks for a repaired JPEG")
        probe.wait_log("image decoded with repairs (corrupt_repaired): Corrupt JPEG data")
        assert int(probe.latest_diagnostics()["corrupt_repaired"]) >= 1
        pub.publish(CompressedImage(format="jpeg", data=b"not a jpeg"))
        probe.wait_log("rejected image: compressed image ('jpeg', 10 bytes) has no PNG or JPEG header")
    finally:
        probe.node.destroy_publisher(pub)
    assert node.stop(signal.SIGTERM) == 0
    assert "Traceback" not in node.stderr, node.stderr
    # libjpeg's own warning never reaches stderr by itself: only inside the node's log line
    assert all(line.startswith("[WARN]") for line in node.stderr.splitlines() if "Corrupt JPEG" in line)


def test_the_generated_params_file_applies_in_a_namespace_and_autostart_false_waits(node_process, probe, tmp_path):
    from hqsmem_ros.ros.params import to_yaml
    params_file = tmp_path / "tracker.yaml"
    params_file.write_text(to_yaml().replace("autostart: true", "autostart: false"))
    node = node_process(ros_args=("--params-file", str(params_file), "-r", "__ns:=/robot1"))
    wait_until(lambda: ("hqsmem_tracker", "/robot1") in probe.node.get_node_names_and_namespaces(), 30, "the node")
    time.sleep(2)  # autostart would have configured it by now (the model builds in under a second)
    assert probe.node.count_subscribers("/robot1/image") == 0 and probe.node.count_publishers("/robot1/tracks") == 0
    assert node.stop(signal.SIGINT) == 0
    assert "Traceback" not in node.stderr and "configure" not in node.stderr, node.stderr


def test_a_bad_parameter_fails_autostart_with_a_specific_message(node_process):
    node = node_process("memory.policy:=newest", "tracker.min_area:=-5")
    assert node.proc.wait(60) == 1
    assert "configure failed: parameter memory.policy='newest' is not one of smart, fifo, reference_only" in node.stderr
    assert "configure failed: parameter tracker.min_area" in node.stderr
    assert "Traceback" not in node.stderr
