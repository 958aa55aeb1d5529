"""Replay over real DDS topics: bags in both storage formats, lockstep and timed pacing, recording.

A small stand-in node (same topics and message types as hqsmem_tracker, masks computed from the
image) isolates the replay side; the last test drives the real node with the CPU backend."""

import os
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from dds_helpers import report_matched
from hqsmem_ros.core.types import Target
from hqsmem_ros.tools import bags
from hqsmem_ros.tools.replay import replay

START = 1_700_000_000_000_000_000
SHAPE = (48, 64)


def square(i):
    """Frame i: a white 10x10 square moving right by 2 px a frame on a dark background."""
    rgb = np.full(SHAPE + (3,), 30, np.uint8)
    mask = np.zeros(SHAPE, bool)
    mask[10:20, 5 + 2 * i:15 + 2 * i] = True
    rgb[mask] = 230
    return rgb, mask


def write_bag(path, storage, n=12, with_targets=True, compressed=False):
    with bags.BagWriter(path, storage) as bag:
        for i in range(n):
            stamp = START + i * 33_000_000
            rgb, mask = square(i)
            topic = "image/compressed" if compressed else "image"
            bag.write_msg(topic, bags.image_msg(rgb, stamp, compressed=compressed),
                          stamp)
            if i == 0 and with_targets:  # stored after its frame: replay must still send it first
                bag.write_msg("targets", bags.targets_msg([Target(7, "square", None, mask)], stamp), stamp)
    return path


class EchoNode:
    """Publishes, for each image, tracks (object 7 = the bright pixels) and a label image, like the node."""

    def __init__(self, delay=0.0, depth=10):
        from hqsmem_ros.msg import TargetArray, TrackedObject, TrackedObjectArray
        self.types = TrackedObject, TrackedObjectArray
        self.delay = delay
        self.targets = []
        self.context = Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node("hqsmem_tracker", context=self.context)
        out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.tracks = self.node.create_publisher(TrackedObjectArray, "tracks", out_qos)
        self.labels = self.node.create_publisher(Image, "tracks/label_image", out_qos)
        image_qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, "image", self.on_image, image_qos)
        self.node.create_subscription(CompressedImage, "image/compressed", self.on_image, image_qos)
        self.node.create_subscription(TargetArray, "targets", self.targets.append, QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        report_matched(self.node, [self.tracks, self.labels])
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.count = 0

    def on_image(self, msg):
        time.sleep(self.delay)
        TrackedObject, TrackedObjectArray = self.types
        mask = bags.image_rgb(msg)[..., 0] > 128
        ys, xs = np.nonzero(mask)
        out = TrackedObjectArray(header=msg.header, frame_index=self.count, ok=True, memory_frames=self.count % 3)
        obj = TrackedObject(id=7, label="square", present=True, score=1.0)
        obj.roi.x_offset, obj.roi.y_offset = int(xs.min()), int(ys.min())
        obj.roi.width, obj.roi.height = int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
        crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.uint8) * 255
        obj.mask = Image(height=crop.shape[0], width=crop.shape[1], encoding="mono8", step=crop.shape[1],
                         data=crop.tobytes(), header=msg.header)
        out.objects = [obj]
        self.count += 1
        self.tracks.publish(out)
        label = (mask * 7).astype(np.uint16)
        self.labels.publish(Image(header=msg.header, height=label.shape[0], width=label.shape[1],
                                  encoding="mono16", step=2 * label.shape[1], data=label.tobytes()))

    def close(self):
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def echo():
    node = EchoNode()
    yield node
    node.close()


@pytest.mark.parametrize("storage,compressed", [("mcap", False), ("sqlite3", False), ("mcap", True)])
def test_lockstep_replay_accounts_for_every_frame_and_records_outputs(tmp_path, echo, storage, compressed):
    bag = write_bag(tmp_path / "in", storage, compressed=compressed)
    summary = replay(bag, tmp_path / "out", storage=storage, wait_s=20, frame_timeout=10, progress=False)
    assert (summary.frames_in, summary.processed, summary.dropped, summary.failed) == (12, 12, 0, 0)
    assert len(summary.latencies_ms) == 12 and summary.fps > 0
    assert summary.memory_frames == [i % 3 for i in range(12)]
    # the targets went out once, stamped with the first frame
    stamp = echo.targets[0].header.stamp
    assert len(echo.targets) == 1 and stamp.sec * 10**9 + stamp.nanosec == START
    # round trip: the recorded masks are the frames' squares, in order, under the node's topic names
    assert bags.topic_types(tmp_path / "out") == {"tracks": bags.TRACKS, "tracks/label_image": bags.IMAGE}
    tracks = [m.decode() for m in bags.read(tmp_path / "out", ["tracks"])]
    assert [bags.stamp_ns(t.header) for t in tracks] == [START + i * 33_000_000 for i in range(12)]
    for i, t in enumerate(tracks):
        assert np.array_equal(bags.tracks_to_masks(t, SHAPE)[7], square(i)[1])
    labels = [bags.mono(m.decode()) for m in bags.read(tmp_path / "out", ["tracks/label_image"])]
    assert len(labels) == 12 and np.array_equal(labels[3] == 7, square(3)[1])


def test_targets_file_replaces_the_bags_targets(tmp_path, echo):
    bag = write_bag(tmp_path / "in", "mcap", n=3, with_targets=False)
    (tmp_path / "t.yaml").write_text("4: {label: box, box: [5, 10, 15, 20]}\n")
    summary = replay(bag, None, targets_file=tmp_path / "t.yaml", wait_s=20, frame_timeout=10, progress=False)
    assert summary.processed == 3
    (msg,) = echo.targets
    assert [(t.id, t.label, t.has_box, t.x_max) for t in msg.targets] == [(4, "box", True, 15.0)]
    assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == START


def test_timed_replay_counts_frames_a_slow_node_drops(tmp_path):
    node = EchoNode(delay=0.15, depth=1)  # a one-slot input, slower than the frames arrive
    try:
        bag = write_bag(tmp_path / "in", "mcap", n=20)
        summary = replay(bag, tmp_path / "out", rate=4.0, wait_s=20, progress=False)  # 120 fps offered
    finally:
        node.close()
    assert summary.frames_in == 20
    assert 0 < summary.processed < 20 and summary.dropped == 20 - summary.processed
    assert bags.message_count(tmp_path / "out", "tracks") == summary.processed


def test_depth_and_camera_info_are_due_before_the_frame_of_their_stamp_whatever_the_log_order(tmp_path):
    from hqsmem_ros.core.depth import Intrinsics
    intr = Intrinsics(50.0, 50.0, 32.0, 24.0)
    with bags.BagWriter(tmp_path / "in") as bag:
        for i in range(3):
            stamp = START + i * 33_000_000
            bag.write_msg("image", bags.image_msg(square(i)[0], stamp), stamp)
            bag.write_msg("depth", bags.depth_msg(np.full(SHAPE, 1.0 + i, np.float32), stamp), stamp)  # after it
            if i != 1:
                bag.write_msg("camera_info", bags.camera_info_msg(intr, SHAPE, stamp), stamp)
    frames = list(bags.frames_with_targets(tmp_path / "in", "image", None, ["depth", "camera_info"]))
    assert [(bags.stamp_ns(msg.header), [(d.topic, bags.stamp_ns(d.decode().header)) for d in due])
            for _, msg, due in frames] == [
        (START + i * 33_000_000, [("depth", START + i * 33_000_000)]
         + ([("camera_info", START + i * 33_000_000)] if i != 1 else [])) for i in range(3)]
    assert [len(due) for _, _, due in bags.frames_with_targets(tmp_path / "in", "image")] == [0, 0, 0]


def test_refuses_an_existing_output(tmp_path):
    bag = write_bag(tmp_path / "in", "mcap", n=2)
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        replay(bag, tmp_path / "out", wait_s=1, progress=False)


@pytest.fixture(scope="module")
def tracker_node(tmp_path_factory):
    """The real hqsmem_tracker node, CPU backend, as the demo starts it (depth.enabled)."""
    from hqsmem_ros.tools.demo import TrackerProcess, node_env
    node = TrackerProcess("cpu", node_env(int(os.environ.get("ROS_DOMAIN_ID", "0"))),
                          tmp_path_factory.mktemp("node") / "node.log")
    yield node
    node.stop()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_real_node_answers_every_frame(tmp_path, tracker_node, storage):
    from hqsmem_ros.tools.sample_bag import write_sample_bag
    # one node for both bags: the second bag's stamps must lie after the first's (the node rejects older ones)
    start = START + (10**10 if storage == "sqlite3" else 0)
    bag = write_sample_bag(tmp_path / "in", "translation", frames=8, size=(120, 160), storage=storage, start_ns=start)
    summary = replay(bag, tmp_path / "out", wait_s=120, frame_timeout=30, progress=False, abort=tracker_node.died)
    assert (summary.frames_in, summary.processed, summary.dropped, summary.failed) == (8, 8, 0, 0)
    gt_stamps = [bags.stamp_ns(m.decode().header) for m in bags.read(bag, ["image"])]
    tracks = [m.decode() for m in bags.read(tmp_path / "out", ["tracks"])]
    assert [bags.stamp_ns(t.header) for t in tracks] == gt_stamps
    assert all(sorted(o.id for o in t.objects) == [1, 2, 3] for t in tracks)
    assert bags.message_count(tmp_path / "out", "tracks/label_image") == 8


def test_real_node_gets_the_bags_depth_and_publishes_3d(tmp_path, tracker_node):
    from hqsmem_ros.tools.sample_bag import write_sample_bag
    start = START + 2 * 10**10  # after the bags above: the same node
    bag = write_sample_bag(tmp_path / "in", "translation", frames=4, size=(120, 160), start_ns=start, depth=True)
    summary = replay(bag, tmp_path / "out", wait_s=120, frame_timeout=30, progress=False, abort=tracker_node.died)
    assert (summary.processed, summary.dropped) == (4, 0)
    truth = {bags.stamp_ns(m.decode().header): bags.tracks_to_positions(m.decode())
             for m in bags.read(bag, ["ground_truth"])}
    for m in bags.read(tmp_path / "out", ["tracks"]):
        msg = m.decode()
        estimated = bags.tracks_to_positions(msg)
        expected = truth[bags.stamp_ns(msg.header)]
        assert set(estimated) == set(expected) == {1, 2, 3}
        for oid, xyz in estimated.items():  # 160x120: a few pixels per object, so a loose bound
            assert np.linalg.norm(xyz - expected[oid]) < 0.1 * np.linalg.norm(expected[oid]), (oid, xyz)
