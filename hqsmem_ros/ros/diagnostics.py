"""Counters and latency windows of the node, reported as one diagnostic_msgs/DiagnosticStatus."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from ..core.types import FrameResult

_WINDOW = 200  # latency samples kept per stage
# What a rejection was of: images (their total makes received = processed + dropped + waiting +
# rejected_images_total readable from /diagnostics alone), targets, service requests, timer callbacks,
# depth images and camera_info (depth.enabled).
KINDS = ("images", "targets", "requests", "timers", "depth", "camera_info")
# What became of the 3D step of a processed frame (depth.enabled): its depth and intrinsics went to the
# tracker, no depth frame within the pairing tolerance, or no valid camera_info yet. A paired depth frame
# rejected on decoding (size, data) is counted under rejected_depth.<reason> instead.
DEPTH_OUTCOMES = ("paired", "unpaired", "no_camera_info")
_PUBLISHERS = 16  # image publishers whose last sequence number is kept (a topic has one or two)
# Key prefix: an output topic -> the subscriptions its writer has matched (TrackerClient.connect waits on it).
MATCHED_SUBSCRIPTIONS = "matched_subscriptions."


class NodeStats:
    """Written by the executor (inputs) and the worker (results); read by the diagnostics timer."""

    def __init__(self):
        self._lock = threading.Lock()
        self.images = 0  # image messages received, valid or not
        # Image messages a publisher sent after one the node received and before the next one it received:
        # overwritten in the subscription's queue while the worker was busy, or lost on the way. Counted from
        # the publishers' sequence numbers (where the RMW gives them: Fast DDS and Cyclone DDS do).
        self.dropped_in_queue = 0
        self._last_sequence: dict[bytes, int] = {}  # publisher gid -> its last sequence number received
        self.processed = 0
        self.rejected: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        self.late_image_rejections = 0  # rejected after entering the frame buffer (decode on the worker)
        self.faults = 0
        self.fault_resets = 0
        self.resolution_resets = 0
        self.stamp_jumps_back = 0
        self.corrupt_repaired = 0  # JPEGs decoded with libjpeg's repairs (processed)
        self.depth_received = 0  # depth messages received, valid or not
        self.depth: Counter[str] = Counter()  # DEPTH_OUTCOMES per processed frame
        self.last: FrameResult | None = None
        self._latency: dict[str, deque[float]] = {}
        self._mark = (time.monotonic(), 0, 0, 0, 0)  # time, images, processed, faults, rejected at last report

    def reject(self, reason: str, kind: str = "images", late: bool = False) -> None:
        with self._lock:
            self.rejected[kind][reason] += 1
            self.late_image_rejections += late

    def depth_in(self) -> None:
        with self._lock:
            self.depth_received += 1

    def depth_frame(self, outcome: str) -> None:
        with self._lock:
            self.depth[outcome] += 1

    def image_in(self, info: dict) -> None:
        """An image message arrived; ``info``: its rclpy MessageInfo (no sequence number where the RMW has none)."""
        sequence = info.get("publication_sequence_number")
        with self._lock:
            self.images += 1
            if not sequence:
                return
            gid = info["publisher_gid"]["data"]
            last = self._last_sequence.pop(gid, None)  # re-inserted last: the dict stays in order of use
            if last is not None and sequence > last:
                self.dropped_in_queue += sequence - last - 1
            self._last_sequence[gid] = sequence
            if len(self._last_sequence) > _PUBLISHERS:
                del self._last_sequence[next(iter(self._last_sequence))]

    def publishers_reset(self) -> None:
        """A new image subscription: what publishers sent before it was never offered to the node."""
        with self._lock:
            self._last_sequence.clear()

    def frame_done(self, result: FrameResult, seconds: float) -> None:
        with self._lock:
            self.processed += 1
            self.faults += not result.ok
            self.last = result
            for stage, value in {**result.timings, "total": seconds}.items():
                self._latency.setdefault(stage, deque(maxlen=_WINDOW)).append(value)

    def status(self, name: str, backend: str, device: str, state: str, received: int, dropped: int,
               depth: bool = False, matched: dict[str, int] | None = None) -> DiagnosticStatus:
        """The report since the previous call (rates) and since start (counts); ``depth``: with the 3D counts;
        ``matched``: output topic -> the subscriptions its writer has matched."""
        with self._lock:
            now = time.monotonic()
            t0, images0, processed0, faults0, rejected0 = self._mark
            rejected = sum(sum(c.values()) for c in self.rejected.values())
            self._mark = (now, self.images, self.processed, self.faults, rejected)
            dt = max(now - t0, 1e-6)
            last = self.last
            values = {
                "lifecycle_state": state, "backend": backend, "device": device,
                "input_fps": f"{(self.images - images0) / dt:.2f}",
                "processed_fps": f"{(self.processed - processed0) / dt:.2f}",
                "frames_received": self.images, "frames_processed": self.processed, "frames_dropped": dropped,
                "frames_waiting": received - self.processed - dropped - self.late_image_rejections,
                "frames_dropped_in_queue": self.dropped_in_queue,
                "rejected_images_total": sum(self.rejected["images"].values()),
                "faults": self.faults, "fault_resets": self.fault_resets, "resolution_resets": self.resolution_resets,
                "stamp_jumps_back": self.stamp_jumps_back, "corrupt_repaired": self.corrupt_repaired,
                "memory_frames": last.memory_frames if last else 0,
                "objects_present": sum(o.present for o in last.objects) if last else 0,
                "objects_absent": sum(not o.present for o in last.objects) if last else 0,
            }
            # Only the writer knows which readers it has matched: a client waits for itself here before its
            # first frame, or that frame's answer can go to no one (reliable, volatile).
            values.update({f"{MATCHED_SUBSCRIPTIONS}{topic}": n for topic, n in (matched or {}).items()})
            if depth:  # depth.enabled
                values["depth_received"] = self.depth_received
                values.update({f"depth_{k}": self.depth[k] for k in DEPTH_OUTCOMES})
            for kind, counts in self.rejected.items():
                values.update({f"rejected_{kind}.{reason}": n for reason, n in sorted(counts.items())})
            for stage, samples in sorted(self._latency.items()):
                p50, p90, p99 = np.percentile(np.asarray(samples) * 1e3, [50, 90, 99])
                values.update({f"latency_ms.{stage}.p50": f"{p50:.1f}", f"latency_ms.{stage}.p90": f"{p90:.1f}",
                               f"latency_ms.{stage}.p99": f"{p99:.1f}"})
            new_faults, new_rejects = self.faults - faults0, rejected - rejected0
        if state != "active":
            level, message = DiagnosticStatus.WARN, f"not tracking: {state}"
        elif last is not None and not last.ok:
            level, message = DiagnosticStatus.ERROR, f"tracker fault: {last.status}"
        elif new_faults or new_rejects:
            level = DiagnosticStatus.WARN
            message = f"{new_faults} faults, {new_rejects} rejected inputs since last report"
        else:
            level, message = DiagnosticStatus.OK, "tracking"
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=device,
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
