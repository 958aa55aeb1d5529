"""Writes a sample rosbag2 from a semi-synthetic sequence (core/sequences.py: real-photo objects over
real backgrounds): ``image`` (rgb8) or ``image/compressed`` (jpeg), ``targets`` for frame 0 (mask + box
of every object) and ``ground_truth`` (TrackedObjectArray of the exact masks, every frame). With ``--depth``
also ``depth`` (16UC1, millimetres, aligned to the image) and ``camera_info``, stamped like the images, and
each ground-truth object's exact 3D centroid (from the unrounded depth) in its ``position``.

    python -m hqsmem_ros.tools.sample_bag out/sample --kind occlusion --frames 60 --size 640x480 [--depth]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.sequences import SEQUENCE_KINDS, make_sequence
from . import bags

START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01: a fixed, plausible wall-clock start


def write_sample_bag(path: Path, kind: str = "occlusion", frames: int | None = None,
                     size: tuple[int, int] = (480, 640), seed: int = 0, storage: str = "mcap",
                     compressed: bool = False, fps: float = 30.0, start_ns: int = START_NS,
                     depth: bool = False) -> Path:
    """The bag at ``path`` (which must not exist); size is (height, width)."""
    seq = make_sequence(kind, n_frames=frames, size=size, seed=seed)
    labels = {t.obj_id: t.label for t in seq.targets()}
    with bags.BagWriter(path, storage) as bag:
        for i in range(len(seq)):
            stamp = start_ns + round(i * 1e9 / fps)
            rgb, masks, depth_m = seq.rgbd(i) if depth else (*seq.frame(i), None)
            if i == 0:  # targets first: they must reach the node before the frame they name
                bag.write_msg("targets", bags.targets_msg(seq.targets(), stamp), stamp)
            image = bags.image_msg(rgb, stamp, compressed=compressed)
            bag.write_msg("image/compressed" if compressed else "image", image, stamp)
            positions = None
            if depth:
                bag.write_msg("depth", bags.depth_msg(depth_m, stamp), stamp)
                bag.write_msg("camera_info", bags.camera_info_msg(seq.intrinsics, seq.size, stamp), stamp)
                positions = seq.true_centroids(depth_m, masks)
            bag.write_msg("ground_truth", bags.tracks_msg(masks, stamp, i, labels=labels, positions=positions), stamp)
    return Path(path)


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' (width x height, as cameras say it) -> (480, 640)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="bag directory to create (must not exist)")
    ap.add_argument("--kind", default="occlusion", choices=SEQUENCE_KINDS)
    ap.add_argument("--frames", type=int, help="frames (default: the kind's own length)")
    ap.add_argument("--size", type=parse_size, default=(480, 640), help="WxH (default 640x480)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=float, default=30.0, help="stamp spacing")
    ap.add_argument("--storage", choices=sorted(bags.STORAGES), default="mcap")
    ap.add_argument("--compressed", action="store_true", help="jpeg CompressedImage on image/compressed")
    ap.add_argument("--depth", action="store_true", help="also depth (16UC1 mm) and camera_info, and 3D ground truth")
    args = ap.parse_args(argv)
    try:
        path = write_sample_bag(args.out, args.kind, args.frames, args.size, args.seed, args.storage,
                                args.compressed, args.fps, depth=args.depth)
    except FileExistsError as exc:
        print(f"sample_bag: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
