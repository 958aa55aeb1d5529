"""launch/tracker.launch.py under launch_testing (``pytest`` or ``launch_test``): the params file's values
hold where no launch argument is given, tracks arrive for an image + target, and the node exits
cleanly. Needs launch, launch_ros and launch_testing (a ROS distribution; not on PyPI)."""

import os
import sys
import tempfile
import time
import unittest

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installed (ROS distributions only, not on PyPI)")
pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS distributions only, not on PyPI)")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from hqsmem_ros.core.sequences import make_sequence  # noqa: E402
from hqsmem_ros.msg import TargetArray, TrackedObjectArray  # noqa: E402
from hqsmem_ros.ros.params import to_yaml  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))  # launch_test runs this file without the suite's conftest
from dds_helpers import image_msg, targets_msg  # noqa: E402

SEQ = make_sequence("translation", n_frames=5, size=(120, 160), n_objects=1)


@pytest.mark.launch_test
def generate_test_description():
    # The params file alone picks the backend and the image QoS: no launch argument overrides them.
    params = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    params.write(to_yaml().replace('backend: "auto"', 'backend: "cpu"')
                 .replace("work_short_side: 288", "work_short_side: 96")
                 + "    qos_overrides:\n      /camera/image:\n        subscription:\n          reliability: reliable\n")
    params.close()
    tracker = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(get_package_share_directory("hqsmem_ros"), "launch",
                                                   "tracker.launch.py")),
        launch_arguments={"params_file": params.name, "image_topic": "/camera/image",
                          "namespace": "launch_test"}.items())
    return launch.LaunchDescription([tracker, launch_testing.actions.ReadyToTest()])


class TestTracksArrive(unittest.TestCase):
    def test_tracks_for_an_image_and_a_target(self, proc_output):
        rclpy.init()
        node = rclpy.create_node("launch_probe")
        try:
            reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            images = node.create_publisher(Image, "/camera/image", reliable)
            targets = node.create_publisher(TargetArray, "/launch_test/targets", reliable)
            received = []
            node.create_subscription(TrackedObjectArray, "/launch_test/tracks", received.append, reliable)
            deadline = time.monotonic() + 60
            while images.get_subscription_count() == 0 or targets.get_subscription_count() == 0:
                rclpy.spin_once(node, timeout_sec=0.1)
                self.assertLess(time.monotonic(), deadline, "the tracker never subscribed")
            proc_output.assertWaitFor("backend cpu: backend=cpu was requested", timeout=20)
            proc_output.assertWaitFor("active: tracking /camera/image (reliable, keep_last 1)", timeout=20)
            targets.publish(targets_msg(SEQ.targets(), 0))
            proc_output.assertWaitFor("start on the next frame processed", timeout=20)
            for i in range(3):
                images.publish(image_msg(SEQ.frame(i)[0], (i + 1) * 1_000_000_000))
                end = time.monotonic() + 10
                while len(received) <= i and time.monotonic() < end:
                    rclpy.spin_once(node, timeout_sec=0.1)
            self.assertGreaterEqual(len(received), 1)
            self.assertEqual([o.id for o in received[0].objects], [1])
        finally:
            node.destroy_node()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestCleanExit(unittest.TestCase):
    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)  # SIGINT from launch: rc 0

    def test_no_traceback(self, proc_output):
        for output in proc_output:
            self.assertNotIn("Traceback", output.text.decode(errors="replace"))
