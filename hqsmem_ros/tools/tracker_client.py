"""The one DDS client of the tracker node: replay (and through it the demo), the soak and the node tests use it.

It publishes frames (raw or compressed), targets and (``rgbd``) aligned depth and camera_info into the
node, subscribes to its tracks (and, when recording, its label images) and /diagnostics, spins on its own
executor thread, waits for the tracks of a given stamp, calls the node's services, and keeps what it sent
and what came back by stamp.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..core.types import Target
from ..msg import TargetArray, TrackedObjectArray
from ..ros import transport
from ..ros.convert import targets_to_msg
from ..ros.diagnostics import MATCHED_SUBSCRIPTIONS
from ..srv import AddTargets, RemoveTargets
from . import bags

Abort = Callable[[], "str | None"]  # polled while waiting: a reason string ends the wait (e.g. the node died)


class NodeTimeout(RuntimeError):
    """The node did not appear, match or answer in time, or ``abort`` gave a reason to stop waiting."""


@dataclass(frozen=True)
class Answer:
    """The node's tracks for one frame: when they arrived (time.monotonic()), memory frames, ok."""
    received: float
    memory_frames: int
    ok: bool


def dds_context() -> Context:
    """A started rclpy context with the package's Fast DDS profile: this process publishes camera frames,
    and the writer's shared-memory segment is what lets a frame through (README, Camera delivery)."""
    transport.apply()  # read when the process's first participant starts: before rclpy.init
    context = Context()
    rclpy.init(args=[], context=context)
    return context


class TrackerClient:
    """Publishers into the node (``<namespace>/image`` or ``image/compressed``, ``targets``; with ``rgbd``
    ``depth`` and ``camera_info``), subscriptions to its outputs, its services; on a context of its own unless
    given one (which it then leaves running)."""

    def __init__(self, name: str = "hqsmem_client", namespace: str = "", *, context: Context | None = None,
                 compressed: bool = False, depth: int = 10, record: bool = False, rgbd: bool = False):
        self._own_context = context is None
        self.context = dds_context() if context is None else context
        self.node = rclpy.create_node(name, namespace=namespace.rstrip("/"), context=self.context)
        reliable = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(CompressedImage if compressed else Image,
                                                    "image/compressed" if compressed else "image", reliable)
        self.targets_pub = self.node.create_publisher(TargetArray, "targets", QoSProfile(
            depth=depth, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.image_topic = self.image_pub.topic_name
        self.rgbd_pubs = ((self.node.create_publisher(Image, "depth", reliable),
                           self.node.create_publisher(CameraInfo, "camera_info", reliable)) if rgbd else ())
        self.cond = threading.Condition()  # guards what the executor thread writes below
        self.frames_sent = 0
        self.sent: dict[int, float] = {}        # stamp -> time.monotonic() it was published
        self.results: dict[int, Answer] = {}    # stamp -> the first tracks message with it
        self.last_tracks = None
        self.label_stamps: set[int] = set()
        self.diagnostics_received = 0
        self._last_diagnostics = None
        self._recorded: queue.SimpleQueue | None = queue.SimpleQueue() if record else None
        outputs = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        # Raw: a recording keeps the node's own bytes; tracks are decoded here once for their stamp.
        self.tracks_sub = self.node.create_subscription(TrackedObjectArray, "tracks", self._on_tracks,
                                                        outputs, raw=True)
        self._outputs = [self.tracks_sub]
        if record:  # the node draws label images only for a subscriber, so only a recording asks for them
            self._outputs.append(self.node.create_subscription(Image, "tracks/label_image", self._on_label,
                                                               outputs, raw=True))
        self._matched: dict[str, int] = {}  # output topic -> subscriptions its writer matched, from /diagnostics
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, outputs)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    # -- outputs, on the executor thread -------------------------------------------------------------
    def _on_tracks(self, raw: bytes) -> None:
        now = time.monotonic()
        msg = deserialize_message(raw, TrackedObjectArray)
        self._record("tracks", bags.TRACKS, raw)
        with self.cond:
            self.results.setdefault(bags.stamp_ns(msg.header), Answer(now, int(msg.memory_frames), bool(msg.ok)))
            self.last_tracks = msg
            self.on_tracks(msg)
            self.cond.notify_all()

    def on_tracks(self, msg) -> None:
        """Called with each tracks message, holding ``cond``: a subclass's hook."""

    def _on_label(self, raw: bytes) -> None:
        self._record("tracks/label_image", bags.IMAGE, raw)
        with self.cond:
            self.label_stamps.add(bags.stamp_ns(deserialize_message(raw, Image).header))
            self.cond.notify_all()

    def _on_diagnostics(self, msg) -> None:
        with self.cond:
            self.diagnostics_received += 1
            for kv in (kv for status in msg.status for kv in status.values):
                if kv.key.startswith(MATCHED_SUBSCRIPTIONS):
                    self._matched[kv.key[len(MATCHED_SUBSCRIPTIONS):]] = int(kv.value)
            self._last_diagnostics = msg
            self.cond.notify_all()

    def _record(self, topic: str, msgtype: str, raw: bytes) -> None:
        if self._recorded is not None:
            self._recorded.put((topic, msgtype, time.time_ns(), raw))

    def recorded(self) -> list[tuple[str, str, int, bytes]]:
        """(topic, type, receive time ns, CDR bytes) of the outputs that arrived since the last call."""
        items = []
        while self._recorded is not None and not self._recorded.empty():
            items.append(self._recorded.get())
        return items

    def clear(self) -> None:
        """Forget what was sent and received (a stamp can then be sent again)."""
        with self.cond:
            self.frames_sent = 0
            self.sent.clear()
            self.results.clear()
            self.last_tracks = None
            self.label_stamps.clear()

    # -- inputs --------------------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0, abort: Abort = lambda: None, targets: bool = True) -> None:
        """Wait for the node's topics, then until matched with every endpoint of theirs the graph shows."""
        deadline = time.monotonic() + timeout
        g, tracks = self.node, self.tracks_sub.topic_name
        self._wait(lambda: g.count_publishers(tracks) > 0 and g.count_subscribers(self.image_topic) > 0, deadline,
                   f"no tracker node publishing {tracks} and subscribed to {self.image_topic}", abort)
        # Every endpoint, not just one: an endpoint of a node that has just exited can linger in the graph
        # for a moment, and a frame sent only to it would be lost.
        self._wait(lambda: self.tracks_sub.get_publisher_count() >= max(1, g.count_publishers(tracks))
                   and self.image_pub.get_subscription_count() >= max(1, g.count_subscribers(self.image_topic))
                   and (not targets or self.targets_pub.get_subscription_count()
                        >= max(1, g.count_subscribers(self.targets_pub.topic_name)))
                   # depth and camera_info: only where the node takes them (depth.enabled)
                   and all(p.get_subscription_count() >= g.count_subscribers(p.topic_name) for p in self.rgbd_pubs),
                   deadline, "the tracker node's topics did not match", abort)
        # Its writers must have matched this client's readers too, or the first answers go to no one (reliable
        # but volatile: a writer sends only to the readers it has matched; seen under load, the first frame's
        # tracks lost). Only the node sees that, in its /diagnostics; reports from now on (a reconfigured node
        # has new writers).
        with self.cond:
            self._matched.clear()
        self._wait(lambda: all(self._matched.get(sub.topic_name, 0) >= max(1, g.count_subscribers(sub.topic_name))
                               for sub in self._outputs),
                   deadline, f"the node's /diagnostics did not report this client in {MATCHED_SUBSCRIPTIONS}*", abort)

    @staticmethod
    def _wait(ready: Callable[[], bool], deadline: float, what: str, abort: Abort) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise NodeTimeout(what)
            if reason := abort():
                raise NodeTimeout(reason)
            time.sleep(0.05)

    def publish_image(self, image, stamp: int) -> None:
        """Publish a frame (a message, or its CDR bytes) whose header carries ``stamp`` (ns)."""
        self.sent[stamp] = time.monotonic()
        self.frames_sent += 1
        self.image_pub.publish(image)

    def publish_rgbd(self, messages: Iterable[tuple[str, Any]], acked: bool = True) -> None:
        """Publish (topic, message or its CDR bytes) pairs, topic ``depth`` or ``camera_info``, in order, ahead of
        the colour frame of their stamp; ``acked``: then wait until the node has them all (lockstep: none is still
        in transit when the colour frame arrives; one wait for all, their deliveries overlap)."""
        pubs = {p.topic_name.rsplit("/", 1)[-1]: p for p in self.rgbd_pubs}
        sent = {}
        for topic, msg in messages:
            pubs[topic].publish(msg)
            sent[topic] = pubs[topic]
        for pub in sent.values() if acked else ():
            pub.wait_for_all_acked(Duration(seconds=5))

    def publish_targets(self, targets) -> None:
        """Publish a TargetArray (a message, or its CDR bytes) and wait until the node has acknowledged it."""
        self.targets_pub.publish(targets)
        self.targets_pub.wait_for_all_acked(Duration(seconds=5))

    def wait_for(self, stamp: int, timeout: float, abort: Abort = lambda: None) -> bool:
        """Whether the tracks for ``stamp`` arrived within ``timeout`` s; raises NodeTimeout if ``abort`` says."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.cond.wait_for(lambda: stamp in self.results, min(0.5, max(deadline - time.monotonic(), 0))):
                if reason := abort():
                    raise NodeTimeout(reason)
                if time.monotonic() >= deadline:
                    return False
            return True

    def answers(self) -> dict[int, Answer]:
        """A snapshot of ``results``, safe to read while tracks still arrive."""
        with self.cond:
            return dict(self.results)

    def wait_labels(self, timeout: float) -> None:
        """Give label images published after the last tracks time to arrive (if the node sends any)."""
        with self.cond:
            self.cond.wait_for(lambda: not self.label_stamps or self.label_stamps >= set(self.results), timeout)

    def latest_diagnostics(self, timeout: float = 5.0) -> dict[str, str]:
        """The values of the first /diagnostics report published after this call."""
        with self.cond:
            seen = self.diagnostics_received
            if not self.cond.wait_for(lambda: self.diagnostics_received > seen, timeout):
                raise NodeTimeout(f"no diagnostics report within {timeout} s")
            return {kv.key: kv.value for kv in self._last_diagnostics.status[0].values}

    # -- services ------------------------------------------------------------------------------------
    def call(self, service_type, name: str, request, timeout: float = 10.0):
        """The response of service ``name`` (relative to the client's namespace) to ``request``."""
        client = self.node.create_client(service_type, name)  # per call: it can only match servers up now
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise NodeTimeout(f"service {name} did not appear within {timeout} s")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done():
                if time.monotonic() > deadline:
                    raise NodeTimeout(f"no response from {name} within {timeout} s")
                time.sleep(0.005)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def add_targets(self, targets: list[Target], timeout: float = 10.0):
        return self.call(AddTargets, "add_targets", AddTargets.Request(targets=targets_to_msg(targets)), timeout)

    def remove_targets(self, ids: list[int], timeout: float = 10.0):
        return self.call(RemoveTargets, "remove_targets", RemoveTargets.Request(ids=ids), timeout)

    def close(self) -> None:
        self.executor.shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        if self._own_context:
            rclpy.try_shutdown(context=self.context)
