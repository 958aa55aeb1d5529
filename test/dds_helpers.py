"""Helpers of the node tests: message builders, a probe (the tracker client, keeping every tracks message
and /rosout line), the node as a process, and an oracle backend for wiring tests."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from hqsmem_ros.tools.tracker_client import TrackerClient


def stamp_msg(ns: int):
    from builtin_interfaces.msg import Time
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def image_msg(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8"):
    from std_msgs.msg import Header
    from hqsmem_ros.ros.convert import array_to_image
    pixels = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
    return array_to_image(pixels, encoding, Header(stamp=stamp_msg(stamp_ns), frame_id="camera"))


def targets_msg(targets, stamp_ns: int):
    """A TargetArray from core Targets (box and/or bool mask)."""
    from std_msgs.msg import Header
    from hqsmem_ros.ros.convert import targets_to_msg
    return targets_to_msg(targets, Header(stamp=stamp_msg(stamp_ns), frame_id="camera"))


def report_matched(node, publishers, period: float = 0.2):
    """A stand-in node's /diagnostics, as the tracker reports them: each output writer's matched subscriptions
    (what TrackerClient.connect waits for)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from hqsmem_ros.ros.diagnostics import MATCHED_SUBSCRIPTIONS
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(DiagnosticArray, "/diagnostics", qos)

    def report():
        values = [KeyValue(key=MATCHED_SUBSCRIPTIONS + p.topic_name, value=str(p.get_subscription_count()))
                  for p in publishers]
        pub.publish(DiagnosticArray(status=[DiagnosticStatus(name=f"{node.get_name()}: stand-in", values=values)]))
    return node.create_timer(period, report)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def full_mask(obj, shape) -> np.ndarray:
    """A TrackedObject's cropped mono8 mask placed back into a full-frame bool mask."""
    from hqsmem_ros.ros.convert import image_to_array
    out = np.zeros(shape, bool)
    if obj.present:
        r = obj.roi
        out[r.y_offset:r.y_offset + r.height, r.x_offset:r.x_offset + r.width] = image_to_array(obj.mask) > 0
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


class Probe(TrackerClient):
    """The tracker client as the node tests use it: keeps every tracks message and /rosout line in order."""

    def __init__(self, context, name: str = "probe", rgbd: bool = False):
        from rcl_interfaces.msg import Log
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        super().__init__(name, context=context, depth=100, rgbd=rgbd)
        self.tracks: list = []
        self.logs: list[str] = []
        rosout_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(Log, "/rosout", self._on_log, rosout_qos)

    def on_tracks(self, msg):
        self.tracks.append(msg)

    def _on_log(self, msg):
        with self.cond:
            self.logs.append(msg.msg)

    def clear(self):
        super().clear()
        with self.cond:
            self.tracks.clear()
            self.logs.clear()

    def publish_frame(self, rgb, stamp_ns, encoding="rgb8"):
        self.publish_image(image_msg(rgb, stamp_ns, encoding), stamp_ns)

    def send_targets(self, targets, stamp_ns: int):
        """Publish a TargetArray and wait until the tracker has queued it (its log line)."""
        self.publish_targets(targets_msg(targets, stamp_ns))
        self.wait_log(f"(stamp {stamp_ns * 1e-9:.9f}) start on")

    def wait_tracks(self, n: int, timeout: float = 20.0):
        return wait_until(lambda: len(self.tracks) >= n and list(self.tracks), timeout, f"{n} tracks messages")

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        def found():
            with self.cond:
                return next((line for line in self.logs if text in line), None)
        return wait_until(found, timeout, f"a log line containing {text!r}")


class NodeProcess:
    """The node as its own process (``python -m hqsmem_ros.ros.node``), its stderr kept in a file."""

    def __init__(self, tmp_path: Path, *params: str, ros_args: tuple[str, ...] = ()):
        self.stderr_path = tmp_path / f"node{len(list(tmp_path.glob('node*.stderr')))}.stderr"
        args = [sys.executable, "-m", "hqsmem_ros.ros.node", "--ros-args", *ros_args]
        for p in params:
            args += ["-p", p]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[1], env=os.environ.copy(),
                                         stdout=subprocess.DEVNULL, stderr=err)

    def stop(self, sig=signal.SIGINT, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def frame_digest(rgb: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(rgb).tobytes(), digest_size=16).digest()


class OracleBackend:
    """Test-only base model (backends/base.py protocol): answers each known frame with its ground truth.

    Frames are recognised by content, so the node's wiring (stamps, masks, absence) is checked exactly;
    an unknown frame raises, which is how tests make the tracker fault."""

    name = "oracle"
    device = "cpu"

    def __init__(self, sequence):
        self._truth = {}
        for i in range(len(sequence)):
            rgb, masks = sequence.frame(i)
            self._truth[frame_digest(rgb)] = masks
        self._ids: set[int] = set()
        self._keys: set[int] = set()

    def add_object(self, obj_id, frame, mask, key):
        self._ids.add(obj_id)
        self._keys.add(key)

    def remove_object(self, obj_id):
        self._ids.discard(obj_id)

    def step(self, frame):
        from hqsmem_ros.core.types import Prediction
        masks = self._truth.get(frame_digest(frame.pixels))
        if masks is None:
            raise LookupError("the oracle does not know this frame")
        return {oid: Prediction(np.asarray(masks[oid], bool), 1.0) for oid in self._ids}

    def accept(self, masks):
        pass

    def embed(self, masks):
        return np.ones(8)

    def write_memory(self, key):
        self._keys.add(key)

    def evict_memory(self, key):
        self._keys.discard(key)

    def memory_keys(self):
        return sorted(self._keys)

    def memory_bytes(self):
        return 0

    def reset(self):
        self._ids.clear()
        self._keys.clear()


def oracle_factory(sequence):
    """A ``tracker_factory`` for TrackerNode that builds an HQSMemTracker on the oracle backend."""
    from hqsmem_ros.core.tracker import HQSMemTracker
    backend = OracleBackend(sequence)
    return lambda settings: (HQSMemTracker(backend, settings.core), "backend oracle: test backend")
