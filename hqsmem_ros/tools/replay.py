"""Plays a rosbag2 into the running tracker node over real topics and records what the node publishes.

Frames go to ``<ns>/image`` (or ``<ns>/image/compressed`` for a CompressedImage topic) as the bag's own
CDR bytes; targets come from the bag's ``targets`` topic or from a file (tools/targets_file.py) and are
sent, acknowledged, before the frame they name. A bag's ``depth`` (Image) and ``camera_info`` go to
``<ns>/depth`` and ``<ns>/camera_info`` with their stamps, before the colour frame of the same stamp
(lockstep: acknowledged first), for a node with ``depth.enabled``. ``<ns>/tracks`` and ``<ns>/tracks/label_image`` are
recorded into a new bag as ``tracks`` and ``tracks/label_image``.

Pacing: by default lockstep (each frame waits for the ``tracks`` message with its stamp, so the node
drops nothing: the mode for evaluation); ``--rate R`` plays at R times the recorded speed (frames the
node cannot keep up with are dropped by its one-slot buffer and counted here).

    python -m hqsmem_ros.tools.replay sample_bag --out tracks_bag
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from rclpy.qos import ReliabilityPolicy

from ..core.types import Target
from ..ros import params
from . import bags
from .targets_file import load_targets
from .tracker_client import NodeTimeout, TrackerClient


RGBD_TOPICS = {"depth": bags.IMAGE, "camera_info": bags.CAMERA_INFO}  # a bag's topics sent beside the frames


@dataclass
class ReplaySummary:
    frames_in: int = 0
    processed: int = 0        # tracks messages answering a frame sent
    failed: int = 0           # of those, ok = false
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # frame sent -> its tracks received
    memory_frames: list[int] = field(default_factory=list)   # per processed frame, in order

    @property
    def dropped(self) -> int:
        return self.frames_in - self.processed

    @property
    def fps(self) -> float:
        return self.processed / self.wall_s if self.wall_s > 0 else 0.0

    def latency(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def text(self) -> str:
        mem = f", memory frames max {max(self.memory_frames)}" if self.memory_frames else ""
        return (f"frames in {self.frames_in}, processed {self.processed} ({self.failed} failed), "
                f"dropped {self.dropped}, {self.fps:.2f} fps over {self.wall_s:.1f} s; latency ms "
                f"p50 {self.latency(50):.0f} p90 {self.latency(90):.0f} p99 {self.latency(99):.0f} "
                f"max {self.latency(100):.0f}{mem}")


def replay(bag: Path, out: Path | None = None, *, rate: float | None = None, targets_file: Path | None = None,
           image_topic: str | None = None, namespace: str = "", storage: str = "mcap",
           frame_timeout: float = 60.0, wait_s: float = 120.0, progress: bool = True,
           abort: Callable[[], str | None] = lambda: None) -> ReplaySummary:
    """Play ``bag`` into the node (lockstep when ``rate`` is None) and record its outputs into ``out``.
    ``abort`` is polled while waiting for the node: a reason string ends the wait (e.g. the node died)."""
    types = bags.topic_types(bag)
    topic = bags.image_topic(bag, types, image_topic)
    compressed = types[topic] == bags.COMPRESSED
    file_targets: list[Target] = load_targets(targets_file) if targets_file else []
    targets_topic = None if file_targets else bags.pick_topic(types, (bags.TARGETS,), None, ("targets",))
    if not file_targets and targets_topic is None:
        print(f"replay: {bag} has no targets topic and no --targets file: the node tracks nothing "
              "unless targets arrive from elsewhere", file=sys.stderr)
    n_frames = bags.message_count(bag, topic)
    streams = [t for t, msgtype in RGBD_TOPICS.items() if types.get(t) == msgtype]

    recorder = bags.BagWriter(out, storage) if out else None
    client = TrackerClient("hqsmem_replay", namespace, compressed=compressed, record=recorder is not None,
                           rgbd=bool(streams))
    summary = ReplaySummary()
    try:
        client.connect(wait_s, abort, targets=bool(file_targets or targets_topic))
        _warn_if_lossy(client)
        if streams and not any(client.node.count_subscribers(p.topic_name) for p in client.rgbd_pubs):
            print(f"replay: the node takes no depth (depth.enabled is false): the bag's {' and '.join(streams)} "
                  "go unused", file=sys.stderr)
        bar = _progress(n_frames, progress)
        start = time.monotonic()
        first_log = None
        for m, msg, due in bags.frames_with_targets(bag, topic, targets_topic, streams):
            if rate:  # recorded timing, scaled
                first_log = m.log_time if first_log is None else first_log
                delay = start + (m.log_time - first_log) / 1e9 / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            stamp = bags.stamp_ns(msg.header)
            if file_targets and not client.sent:
                client.publish_targets(bags.serialize(bags.targets_msg(file_targets, stamp)))
            for t in due:
                if t.topic not in RGBD_TOPICS:
                    client.publish_targets(t.raw)
            if rgbd := [(t.topic, t.raw) for t in due if t.topic in RGBD_TOPICS]:
                client.publish_rgbd(rgbd, acked=rate is None)
            client.publish_image(m.raw, stamp)
            if rate is None:
                client.wait_for(stamp, frame_timeout, abort)
            if recorder:
                _write(client, recorder)
            bar.update(1)
        if rate:
            _drain(client, start)
        summary.wall_s = time.monotonic() - start
        client.wait_labels(timeout=2.0)
        bar.close()
    finally:
        client.close()
        if recorder:
            _write(client, recorder)
            recorder.close()
    summary.frames_in = client.frames_sent
    for stamp, sent in client.sent.items():
        if answer := client.results.get(stamp):
            summary.processed += 1
            summary.failed += not answer.ok
            summary.latencies_ms.append(1000 * (answer.received - sent))
            summary.memory_frames.append(answer.memory_frames)
    return summary


def _warn_if_lossy(client: TrackerClient) -> None:
    # Measured with Fast DDS 3.2: raw 640x480 frames sent best-effort one at a time mostly never arrive
    # (3 of 20, re-sending did not help); 320x240 ones did (30 of 30).
    topic = client.image_topic
    if any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
           for i in client.node.get_subscriptions_info_by_topic(topic)):
        print(f"replay: the node takes {topic} best-effort: large frames are often lost in transit and counted "
              "as dropped (lockstep waits --frame-timeout for each); start the node with "
              f"-p {params.image_qos_override('reliability', 'reliable', topic)} for lossless replay",
              file=sys.stderr)


def _write(client: TrackerClient, recorder: bags.BagWriter) -> None:
    """Write what arrived into the recording, from this thread (sqlite3 objects are per thread)."""
    for item in client.recorded():
        recorder.write(*item)


def _drain(client: TrackerClient, start: float) -> None:
    """Timed replay's end: wait until the last frame is answered or the node has gone quiet."""
    last = next(reversed(client.sent), None)
    while last is not None and not client.wait_for(last, 0.5):
        answers = client.answers()
        newest = max((a.received for a in answers.values()), default=start)
        latency = max((a.received - client.sent[s] for s, a in answers.items() if s in client.sent), default=0.0)
        if time.monotonic() - max(newest, client.sent[last]) > max(2.0, 3 * latency):
            break


def _progress(total: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit="frame", disable=not enabled, dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("bag", type=Path, help="rosbag2 directory (mcap or sqlite3)")
    ap.add_argument("--out", type=Path, help="bag to record tracks and label images into (must not exist)")
    ap.add_argument("--storage", choices=sorted(bags.STORAGES), default="mcap", help="format of --out")
    ap.add_argument("--rate", type=float, help="play at RATE x recorded speed (default: lockstep, no drops)")
    ap.add_argument("--targets", type=Path, help="targets file (YAML/JSON boxes, label PNG) for the first frame "
                    "instead of the bag's targets topic")
    ap.add_argument("--image-topic", help="the bag's image topic (default: image / image/compressed / the only one)")
    ap.add_argument("--namespace", default="", help="the node's namespace")
    ap.add_argument("--frame-timeout", type=float, default=60.0, help="lockstep: seconds to wait for one frame")
    ap.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the node to appear")
    args = ap.parse_args(argv)
    if args.rate is not None and args.rate <= 0:
        ap.error("--rate must be positive")
    try:
        summary = replay(args.bag, args.out, rate=args.rate, targets_file=args.targets,
                         image_topic=args.image_topic, namespace=args.namespace, storage=args.storage,
                         frame_timeout=args.frame_timeout, wait_s=args.wait)
    except (ValueError, FileExistsError, FileNotFoundError, NodeTimeout) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    print(f"replay: {summary.text()}")
    if args.out:
        print(f"replay: recorded into {args.out}")
    return 0 if summary.processed else 1


if __name__ == "__main__":
    sys.exit(main())
