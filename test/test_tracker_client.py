"""tools/tracker_client.py against a stand-in node that answers only frames with an even stamp: waiting by
stamp, its timeout and abort, what it counts, and the timeouts of connect and of a service call."""

import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from dds_helpers import image_msg, report_matched
from hqsmem_ros.msg import TrackedObjectArray
from hqsmem_ros.tools.tracker_client import NodeTimeout, TrackerClient

RGB = np.zeros((8, 8, 3), np.uint8)


@pytest.fixture
def even_node(ros_context):
    """Publishes tracks (memory_frames = stamp % 10) for each image whose stamp is even."""
    node = rclpy.create_node("even_tracker", context=ros_context)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    tracks = node.create_publisher(TrackedObjectArray, "tracks", qos)

    def on_image(msg):
        if msg.header.stamp.nanosec % 2 == 0:
            tracks.publish(TrackedObjectArray(header=msg.header, ok=True, memory_frames=msg.header.stamp.nanosec % 10))
    node.create_subscription(Image, "image", on_image, qos)
    report_matched(node, [tracks])
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    yield node
    executor.shutdown()
    node.destroy_node()


@pytest.fixture
def client():
    c = TrackerClient("client_under_test")
    yield c
    c.close()


def test_connect_and_calls_give_up_with_what_they_waited_for(client):  # first: no node in the graph yet
    with pytest.raises(NodeTimeout, match="no tracker node publishing /tracks"):
        client.connect(timeout=0.3)
    with pytest.raises(NodeTimeout, match="gone"):
        client.connect(timeout=10, abort=lambda: "gone")
    with pytest.raises(NodeTimeout, match="service no_such_service did not appear"):
        client.call(Trigger, "no_such_service", Trigger.Request(), timeout=0.3)


def test_waits_by_stamp_times_out_on_an_unanswered_frame_and_counts_both_ways(even_node, client):
    client.connect(timeout=20, targets=False)
    client.publish_image(image_msg(RGB, 4), 4)
    assert client.wait_for(4, timeout=10)
    assert (client.results[4].memory_frames, client.results[4].ok) == (4, True)
    assert client.results[4].received >= client.sent[4]
    client.publish_image(image_msg(RGB, 7), 7)
    began = time.monotonic()
    assert not client.wait_for(7, timeout=0.6)
    assert 0.6 <= time.monotonic() - began < 2
    with pytest.raises(NodeTimeout, match="the node died"):
        client.wait_for(7, timeout=10, abort=lambda: "the node died")
    assert client.frames_sent == 2 and set(client.sent) == {4, 7} and set(client.answers()) == {4}
    client.clear()
    assert (client.frames_sent, client.sent, client.answers()) == (0, {}, {})
