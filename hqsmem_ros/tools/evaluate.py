"""Scores predicted masks against ground truth: J, F, J&F (DAVIS) and the VOTS measures Q, Acc, Rob,
NRE, DRE, ADQ (core/metrics.py), per object, per sequence and overall.

Either side is a DAVIS/YouTube-VOS folder (``Annotations/<seq>/*.png``, or ``<seq>/*.png`` for results)
or a rosbag2 with a TrackedObjectArray topic (``tracks``, ``ground_truth``) or a label-image topic
(mono8/mono16, pixel = object id). Bag frames are matched by header stamp, folder frames by file stem;
a bag against a folder is matched by frame order. Each object is scored on the frames after the first
one where it is visible in the ground truth (its initialisation frame); a frame missing from the
predictions (e.g. dropped) counts as every object reported absent.

3D: where the ground truth carries each object's true 3D centroid (``sample_bag --depth``) and the predictions
carry positions (TrackedObject ``has_position``), the centroid error is reported next to J and F: median and
p90 in metres and as a percentage of the true range (distance from the camera), over the frames where both
have a position and the mask's J is at least ``--min-j-3d`` (default 0.8, the issue's target condition).

    python -m hqsmem_ros.tools.evaluate --gt sample_bag --pred tracks_bag --csv scores.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core import davis_io
from ..core.metrics import boundary_f, jaccard, vots_measures
from . import bags

GT_TOPICS = ("ground_truth", "ground_truth/label_image")
PRED_TOPICS = ("tracks", "tracks/label_image")
COLUMNS = ("J", "F", "J&F", "Q", "Acc", "Rob", "NRE", "DRE", "ADQ")
COLUMNS_3D = ("3D_med", "3D_p90", "3D_med%", "3D_p90%")  # metres, then percent of range


@dataclass
class ObjectScores:
    """Per-frame scores of one object over its scored frames."""

    sequence: str
    obj_id: int
    frames: list[int] = field(default_factory=list)  # frame indices in the ground truth's order
    j: list[float] = field(default_factory=list)
    f: list[float] = field(default_factory=list)
    visible: list[bool] = field(default_factory=list)
    reported: list[bool] = field(default_factory=list)
    errors_3d: list[tuple[float, float, float]] = field(default_factory=list)  # (error m, range m, J) per frame

    def summary(self) -> dict[str, float]:
        v = vots_measures(self.j, self.visible, self.reported)
        j, f = _mean(self.j), _mean(self.f)
        return {"J": j, "F": f, "J&F": (j + f) / 2, "Q": v.quality, "Acc": v.accuracy, "Rob": v.robustness,
                "NRE": v.nre, "DRE": v.dre, "ADQ": v.adq}


@dataclass
class Report:
    objects: list[ObjectScores]
    min_j_3d: float = 0.8  # the 3D columns count frames whose J is at least this

    def sequences(self) -> dict[str, list[ObjectScores]]:
        out: dict[str, list[ObjectScores]] = {}
        for o in self.objects:
            out.setdefault(o.sequence, []).append(o)
        return out

    @property
    def has_3d(self) -> bool:
        return any(o.errors_3d for o in self.objects)

    def rows(self) -> list[dict]:
        """One row per sequence (means over its objects) and an ``overall`` row (mean over all objects); the 3D
        columns pool their objects' frames."""
        groups = list(self.sequences().items()) + [("overall", self.objects)]
        return [{"sequence": name, "objects": len(objs), "frames": max((len(o.frames) for o in objs), default=0),
                 **_average([o.summary() for o in objs]),
                 **(centroid_summary([e for o in objs for e in o.errors_3d], self.min_j_3d) if self.has_3d else {})}
                for name, objs in groups]

    @property
    def overall(self) -> dict[str, float]:
        return self.rows()[-1]

    def table(self) -> str:
        columns = COLUMNS + (COLUMNS_3D if self.has_3d else ())
        head = f"{'sequence':<24} {'obj':>3} {'frames':>6} " + " ".join(f"{c:>7}" for c in columns)
        lines = [head, "-" * len(head)]
        for r in self.rows():
            lines.append(f"{r['sequence'][:24]:<24} {r['objects']:>3} {r['frames']:>6} "
                         + " ".join(f"{r[c]:>7.3f}" for c in columns))
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"rows": self.rows(),
                "objects": [{"sequence": o.sequence, "id": o.obj_id, **o.summary()} for o in self.objects],
                "per_frame": [asdict(o) for o in self.objects]}


def centroid_errors(truth: dict[int, np.ndarray | None], predicted: dict[int, np.ndarray]
                    ) -> dict[int, tuple[float, float]]:
    """(centroid error, true range) in metres per id that has both a true and a predicted centroid."""
    return {oid: (float(np.linalg.norm(np.subtract(predicted[oid], t))), float(np.linalg.norm(t)))
            for oid, t in truth.items() if t is not None and oid in predicted}


def centroid_summary(errors: list[tuple[float, float, float]], min_j: float = 0.8) -> dict[str, float]:
    """Median and p90 centroid error (m, and % of range) over the (error, range, J) samples with J >= ``min_j``."""
    kept = np.array([(e, e / r * 100) for e, r, j in errors if j >= min_j]).reshape(-1, 2)
    if not kept.size:
        return dict.fromkeys(COLUMNS_3D, math.nan)
    med, p90 = np.percentile(kept, [50, 90], axis=0)
    return {"3D_med": float(med[0]), "3D_p90": float(p90[0]), "3D_med%": float(med[1]), "3D_p90%": float(p90[1])}


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _average(summaries: list[dict[str, float]]) -> dict[str, float]:
    return {c: float(np.nanmean([s[c] for s in summaries])) if any(not math.isnan(s[c]) for s in summaries)
            else math.nan for c in COLUMNS}


# -- sources ---------------------------------------------------------------------------------------
class FolderSource:
    """PNG label images per sequence, frames keyed by file stem."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._paths: dict[str, dict[str, Path]] = {}

    def _annotations(self, seq: str) -> dict[str, Path]:
        if seq not in self._paths:
            self._paths[seq] = davis_io.annotation_paths(self.root, seq)
        return self._paths[seq]

    def sequences(self) -> list[str]:
        return [s for s in davis_io.sequences(self.root) if self._annotations(s)]

    def frames(self, seq: str) -> list[str]:
        return list(self._annotations(seq))

    def masks(self, seq: str, key: str, shape: tuple[int, int] | None) -> dict[int, np.ndarray]:
        path = self._annotations(seq).get(key)
        return davis_io.labels_to_masks(davis_io.read_label_png(path)) if path else {}

    def positions(self, seq: str, key: str) -> dict[int, np.ndarray]:
        return {}  # label images carry no 3D


class BagSource:
    """One sequence (named after the bag) from a TrackedObjectArray or label-image topic, keyed by stamp."""

    def __init__(self, path: Path, topic: str | None, defaults: tuple[str, ...]):
        self.path = Path(path)
        types = bags.topic_types(self.path)
        self.topic = topic or next((t for t in defaults if t in types), None)
        if self.topic not in types or types[self.topic] not in (bags.TRACKS, bags.IMAGE):
            raise ValueError(f"{path}: no TrackedObjectArray or label-image topic {topic or ' / '.join(defaults)}"
                             f" (topics: {', '.join(sorted(types))})")
        self.msgtype = types[self.topic]
        # TrackedObjectArray masks are cropped: the frame size comes from any image in the bag.
        # (the camera's topic before any other image, e.g. a depth stream)
        images = ([t for t in ("image", "image/compressed") if t in types]
                  or [t for t, m in types.items() if m in (bags.IMAGE, bags.COMPRESSED)])
        first = next(bags.read(self.path, images[:1]), None) if images else None  # no topic would read all
        self.shape = bags.image_rgb(first.decode()).shape[:2] if first else None
        self._raw: dict[int, bags.BagMessage] = {}
        for m in bags.read(self.path, [self.topic]):
            self._raw.setdefault(bags.stamp_ns(m.decode().header), m)  # a repeated stamp: keep the first

    def sequences(self) -> list[str]:
        return [self.path.name]

    def frames(self, seq: str) -> list[int]:
        return sorted(self._raw)

    def masks(self, seq: str, key: int, shape: tuple[int, int] | None) -> dict[int, np.ndarray]:
        if key not in self._raw:
            return {}
        msg = self._raw[key].decode()
        if self.msgtype == bags.IMAGE:
            return davis_io.labels_to_masks(bags.mono(msg))
        shape = shape or self.shape
        if shape is None:
            raise ValueError(f"{self.path}: a TrackedObjectArray topic needs an image topic beside it "
                             "(for the frame size)")
        return bags.tracks_to_masks(msg, shape)

    def positions(self, seq: str, key: int) -> dict[int, np.ndarray]:
        if key not in self._raw or self.msgtype != bags.TRACKS:
            return {}
        return bags.tracks_to_positions(self._raw[key].decode())


def open_source(path: Path, topic: str | None, defaults: tuple[str, ...]):
    return BagSource(path, topic, defaults) if bags.is_bag(path) else FolderSource(path)


def _shape(masks: dict[int, np.ndarray]) -> tuple[int, int] | None:
    return next(iter(masks.values())).shape if masks else None


# -- scoring ---------------------------------------------------------------------------------------
def evaluate(gt, pred, sequences: list[str] | None = None, bound_th: float = 0.008, min_j_3d: float = 0.8
             ) -> Report:
    """Scores of every ground-truth object of every (selected) sequence."""
    gt_seqs = sequences or gt.sequences()
    pred_seqs = pred.sequences()
    objects = []
    for seq in gt_seqs:
        # A single-sequence pair (two bags) matches whatever its names; otherwise names must agree.
        pseq = pred_seqs[0] if len(gt_seqs) == 1 and len(pred_seqs) == 1 else seq
        objects += _score_sequence(gt, pred, seq, pseq, bound_th)
    return Report(objects, min_j_3d)


def _score_sequence(gt, pred, seq: str, pseq: str, bound_th: float) -> list[ObjectScores]:
    gt_keys = gt.frames(seq)
    pred_keys = pred.frames(pseq) if pseq in pred.sequences() else []
    same_kind = bool(gt_keys) and bool(pred_keys) and type(gt_keys[0]) is type(pred_keys[0])
    scores: dict[int, ObjectScores] = {}
    shape = None
    for i, key in enumerate(gt_keys):
        truth = gt.masks(seq, key, shape)
        shape = shape or _shape(truth)
        pkey = key if same_kind else (pred_keys[i] if i < len(pred_keys) else None)
        guess = pred.masks(pseq, pkey, shape) if pkey is not None and shape else {}
        errors_3d = centroid_errors(gt.positions(seq, key), pred.positions(pseq, pkey) if pkey is not None else {})
        for oid in set(scores) | {o for o, m in truth.items() if m.any()}:
            if oid not in scores:  # first visible frame: the initialisation, not scored
                scores[oid] = ObjectScores(seq, oid)
                continue
            empty = np.zeros(shape, bool)
            g, p = truth.get(oid, empty), guess.get(oid, empty)
            s = scores[oid]
            s.frames.append(i)
            s.j.append(jaccard(p, g))
            s.f.append(boundary_f(p, g, bound_th))
            s.visible.append(bool(g.any()))
            s.reported.append(bool(p.any()))
            if oid in errors_3d:
                s.errors_3d.append((*errors_3d[oid], s.j[-1]))
    return [scores[k] for k in sorted(scores)]


# -- command line ----------------------------------------------------------------------------------
def write_csv(report: Report, path: Path) -> None:
    with open(path, "w", newline="") as fh:
        extra = COLUMNS_3D if report.has_3d else ()
        writer = csv.DictWriter(fh, fieldnames=["sequence", "objects", "frames", *COLUMNS, *extra])
        writer.writeheader()
        writer.writerows(report.rows())


def write_json(report: Report, path: Path) -> None:
    Path(path).write_text(json.dumps(json_safe(report.to_json()), indent=1))


def json_safe(value):
    """NaN is not JSON: undefined measures become null."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gt", type=Path, required=True, help="ground truth: DAVIS-layout folder or bag")
    ap.add_argument("--pred", type=Path, required=True, help="predictions: DAVIS-layout folder or bag")
    ap.add_argument("--gt-topic", help=f"ground-truth topic in a bag (default: {' or '.join(GT_TOPICS)})")
    ap.add_argument("--pred-topic", help=f"prediction topic in a bag (default: {' or '.join(PRED_TOPICS)})")
    ap.add_argument("--sequences", nargs="+", help="only these sequences (folders)")
    ap.add_argument("--bound-th", type=float, default=0.008, help="F boundary tolerance (fraction of diagonal)")
    ap.add_argument("--min-j-3d", type=float, default=0.8, help="3D error only on frames with J at least this")
    ap.add_argument("--csv", type=Path, help="write the per-sequence table here")
    ap.add_argument("--json", type=Path, help="write tables, per-object and per-frame scores here")
    args = ap.parse_args(argv)
    try:
        gt = open_source(args.gt, args.gt_topic, GT_TOPICS)
        pred = open_source(args.pred, args.pred_topic, PRED_TOPICS)
    except (ValueError, FileNotFoundError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    report = evaluate(gt, pred, args.sequences, args.bound_th, args.min_j_3d)
    if not report.objects:
        print("evaluate: no ground-truth object found", file=sys.stderr)
        return 1
    print(report.table())
    if args.csv:
        write_csv(report, args.csv)
    if args.json:
        write_json(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
