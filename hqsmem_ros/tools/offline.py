"""Runs the tracker core over recorded data without ROS/DDS and writes masks in DAVIS layout
(``<out>/Annotations/<sequence>/<frame>.png``, palette PNGs, pixel = object id).

Sources:
- a DAVIS / YouTube-VOS folder (``JPEGImages/<seq>/*.jpg``): each object starts on the first frame
  where an annotation PNG shows it (frame 0 for DAVIS, its first appearance for YouTube-VOS);
- a rosbag2: its image topic, targets from its ``targets`` topic (matched to frames by stamp) or --targets;
- a video file (anything cv2.VideoCapture reads): targets from --targets, on frame 0.

    python -m hqsmem_ros.tools.offline DAVIS/ --out results/ --backend cpu
    evaluate with: python -m hqsmem_ros.tools.evaluate --gt DAVIS/ --pred results/
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import yaml

from ..core import davis_io
from ..core.config import from_flat
from ..core.factory import Settings, build_tracker
from ..core.session import TrackingSession
from ..core.targets import Rejection
from ..core.types import Target
from . import bags
from .targets_file import load_targets

Frame = tuple[str, np.ndarray, list[Target]]  # (file stem, RGB frame, targets starting on it)


@dataclass
class Clip:
    name: str
    frames: Iterable[Frame]
    length: int | None = None


@dataclass
class ClipStats:
    name: str
    frames: int
    seconds: float
    max_memory_frames: int
    rejected: list[str]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


# -- sources ---------------------------------------------------------------------------------------
def davis_clips(root: Path, names: list[str] | None = None) -> Iterator[Clip]:
    for seq in names or davis_io.sequences(root):
        frames = davis_io.frame_paths(root, seq)
        yield Clip(seq, _davis_frames(root, seq, frames), len(frames))


def _davis_frames(root: Path, seq: str, frames: list[Path]) -> Iterator[Frame]:
    started: set[int] = set()
    annotations = davis_io.annotation_paths(root, seq)
    for path in frames:
        targets = []
        if path.stem in annotations:
            for oid, mask in davis_io.labels_to_masks(davis_io.read_label_png(annotations[path.stem])).items():
                if oid not in started:  # later annotations of a started object are ground truth, not input
                    started.add(oid)
                    targets.append(Target(oid, "", None, mask))
        yield path.stem, davis_io.read_rgb(path), targets


def bag_clip(path: Path, image_topic: str | None = None, targets: list[Target] | None = None) -> Clip:
    types = bags.topic_types(path)
    topic = bags.image_topic(path, types, image_topic)
    targets_topic = None if targets else bags.pick_topic(types, (bags.TARGETS,), None, ("targets",))
    return Clip(Path(path).name, _bag_frames(path, topic, targets_topic, targets or []),
                bags.message_count(path, topic))


def _bag_frames(path: Path, topic: str, targets_topic: str | None, file_targets: list[Target]) -> Iterator[Frame]:
    for index, (_, msg, due) in enumerate(bags.frames_with_targets(path, topic, targets_topic)):
        targets = [t for m in due for t in bags.targets_from_msg(m.decode())]
        yield f"{index:05d}", bags.image_rgb(msg), (file_targets if index == 0 else []) + targets


def video_clip(path: Path, targets: list[Target]) -> Clip:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open as a video")
    length = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None

    def frames() -> Iterator[Frame]:
        index = 0
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield f"{index:05d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), targets if index == 0 else []
                index += 1
        finally:
            cap.release()
    return Clip(Path(path).stem, frames(), length)


def open_clips(source: Path, targets_file: Path | None = None, image_topic: str | None = None,
               sequences: list[str] | None = None) -> Iterator[Clip]:
    targets = load_targets(targets_file) if targets_file else None
    if bags.is_bag(source):
        yield bag_clip(source, image_topic, targets)
    elif Path(source).is_dir():
        yield from davis_clips(Path(source), sequences)
    elif targets is None:
        raise ValueError(f"{source}: a video needs --targets")
    else:
        yield video_clip(source, targets)


# -- running ---------------------------------------------------------------------------------------
def run_clip(session: TrackingSession, clip: Clip, out_root: Path | None, progress: bool = False,
             on_result=None) -> ClipStats:
    """Track ``clip`` from a reset session, as the node would; write one label PNG per frame under
    ``out_root`` (none for a frame the resolution policy refuses)."""
    from tqdm import tqdm
    session.reset()
    rejected: list[str] = []
    max_memory = frames = 0
    start = time.perf_counter()
    for stem, rgb, targets in tqdm(clip.frames, total=clip.length, desc=clip.name, unit="frame", disable=not progress):
        try:
            outcome = session.process(rgb, targets)
        except Rejection as exc:
            rejected.append(f"{clip.name}/{stem}: frame refused: {exc}")
            continue
        result = outcome.result
        rejected += [f"{clip.name}/{stem}: {exc}" for exc in outcome.rejected]
        if not result.ok:
            rejected.append(f"{clip.name}/{stem}: tracker fault: {result.status}")
        max_memory = max(max_memory, result.memory_frames)
        frames += 1
        if out_root is not None:
            masks = {o.obj_id: o.mask for o in result.objects if o.present}
            davis_io.write_label_png(out_root / "Annotations" / clip.name / f"{stem}.png",
                                     davis_io.masks_to_labels(masks, rgb.shape[:2]))
        if on_result:
            on_result(stem, rgb, result)
    return ClipStats(clip.name, frames, time.perf_counter() - start, max_memory, rejected)


def parse_params(items: list[str]) -> dict:
    """``name=value`` pairs, values read as YAML (so 3, 0.5, true and cpu all take their natural type)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"parameter {item!r} is not name=value")
        out[name.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("source", type=Path, help="DAVIS/YouTube-VOS folder, rosbag2 directory or video file")
    ap.add_argument("--out", type=Path, required=True, help="output root (Annotations/<seq>/ is written)")
    ap.add_argument("--targets", type=Path, help="targets file for a bag or video (YAML/JSON boxes, label PNG)")
    ap.add_argument("--image-topic", help="bag image topic (default: image / image/compressed / the only one)")
    ap.add_argument("--sequences", nargs="+", help="only these sequences of a folder")
    ap.add_argument("--backend", choices=("auto", "cpu", "hqsmem"), default="auto")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="any tracker parameter, as in config/tracker.yaml (e.g. -p memory.capacity=8)")
    args = ap.parse_args(argv)
    try:
        settings = from_flat(Settings(), {"backend": args.backend, **parse_params(args.param)})
        clips = list(open_clips(args.source, args.targets, args.image_topic, args.sequences))
    except (ValueError, FileNotFoundError) as exc:
        print(f"offline: {exc}", file=sys.stderr)
        return 2
    tracker, why = build_tracker(settings)
    print(f"offline: {why}")
    session = TrackingSession(tracker)
    for clip in clips:
        stats = run_clip(session, clip, args.out, progress=True)
        for line in stats.rejected:
            print(f"offline: {line}", file=sys.stderr)
        print(f"offline: {clip.name}: {stats.frames} frames, {stats.fps:.2f} fps, "
              f"memory frames max {stats.max_memory_frames}")
    print(f"offline: masks in {args.out / 'Annotations'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
