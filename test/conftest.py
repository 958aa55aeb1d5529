"""Shared fixtures: a private DDS domain per run, one rclpy context and one probe node per test module,
and one folder of random-initialised checkpoints (official formats) per run."""

import os
import random
import sys

import pytest

# Before rclpy starts: discovery stays on this machine, and a run never meets another run's nodes.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(20, 101)))  # 0..101: clear of ephemeral ports
sys.path.insert(0, os.path.dirname(__file__))  # importlib import mode: let tests import dds_helpers


@pytest.fixture(scope="module")
def ros_context():
    import rclpy
    from hqsmem_ros.tools.tracker_client import dds_context
    context = dds_context()  # the probe publishes camera frames: the package's Fast DDS profile first
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope="module")
def probe(ros_context):
    from dds_helpers import Probe
    p = Probe(ros_context)
    yield p
    p.close()


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory):
    """The GPU pipeline's default checkpoints, random, written once: they load through the node's code."""
    from hqsmem_ros.tools.weights import ensure_random
    return ensure_random(tmp_path_factory.mktemp("random_weights"))


@pytest.fixture
def node_process(tmp_path, probe):
    """Starts node processes (``-p`` items, ``ros_args``); kills any still running at the end."""
    from dds_helpers import NodeProcess
    started = []

    def start(*params, ros_args=()):
        started.append(NodeProcess(tmp_path, *params, ros_args=ros_args))
        return started[-1]

    probe.clear()
    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
