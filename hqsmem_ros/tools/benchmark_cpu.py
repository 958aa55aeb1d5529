"""Benchmark of the CPU backend through the whole tracker loop (``HQSMemTracker.process``, targets on
frame 0), against OpenCV's CSRT and KCF box trackers started on the same first-frame boxes.

Scenes (core/scenes.py) come in two splits: ``train`` seeds (the only ones anything may be tuned on) and
``fresh`` seeds (report only); each split gets its own table, one row per kind averaged over its seeds.
Per row: mean J and boundary F over visible object-frames, presence accuracy over all object-frames,
box IoU per object-frame for ours, CSRT and KCF (1 when the object is absent and reported absent, 0 when
only one of truth and tracker says absent), ms per frame and fps, each tracker timed in the same run.
Then the speed with 1, 3 and 12 objects (translation sequence), and the memory-policy ablation.
The legacy sequences (core/sequences.py) are still available with ``--sequences``.

    python -m hqsmem_ros.tools.benchmark_cpu                    # both splits, baselines, speed, ablation
    python -m hqsmem_ros.tools.benchmark_cpu --split fresh --kinds lookalike
    python -m hqsmem_ros.tools.benchmark_cpu --split none --sequences long_loop   # the 3,000-frame loop
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..core.backends.cpu import CpuBackend, CpuBackendConfig
from ..core.config import deprecated_names, from_flat, specs
from ..core.factory import build_cpu_tracker
from ..core.memory import POLICIES, MemoryConfig
from ..core.metrics import boundary_f, jaccard
from ..core.scenes import DEFAULT_FRAMES as SCENE_FRAMES, SCENE_KINDS, SPLITS, make_scene
from ..core.sequences import SEQUENCE_KINDS, Sequence, make_sequence
from ..core.session import TrackingSession
from ..core.tracker import HQSMemConfig
from ..core.types import mask_box

QUICK_FRAMES = dict(translation=60, scale_rotation=80, occlusion=150, exit_reentry=160, distractor=120,
                    small_objects=60, appearance_change=300, long_loop=600)
ABLATION_KINDS = ("appearance_change", "long_loop")
GAP = 5          # frames out of sight that make the next appearance a re-entry
REENTRY = 0.5    # share of its frame-0 area visible again that counts as re-entered
BASELINES = ("csrt", "kcf")


def baseline_factory(name: str):
    """OpenCV's box tracker ``name`` (a factory), or None when this OpenCV lacks it (opencv-contrib:
    requirements/baselines.txt)."""
    attr = f"Tracker{name.upper()}_create"
    for module in (cv2, getattr(cv2, "legacy", None)):
        if module is not None and hasattr(module, attr):
            return getattr(module, attr)
    return None


def box_iou(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) boxes; None is absent: two absences agree (1), one alone is 0."""
    if a is None or b is None:
        return float(a is None and b is None)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Score:
    name: str
    frames: int = 0
    seconds: float = 0.0
    j: list[float] = field(default_factory=list)       # per visible object-frame
    f: list[float] = field(default_factory=list)
    presence: list[bool] = field(default_factory=list)  # per object-frame: reported == visible
    delays: list[float] = field(default_factory=list)   # per re-entry (inf: never re-acquired)
    j_by_frame: list[float] = field(default_factory=list)  # mean J of the visible objects per frame
    box: list[float] = field(default_factory=list)      # box IoU per object-frame (see box_iou)
    baselines: dict[str, list[float]] = field(default_factory=dict)   # name -> box IoU per object-frame
    baseline_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ms(self) -> float:
        return 1000 * self.seconds / max(self.frames, 1)

    def row(self) -> str:
        delay = "-" if not self.delays else ("never" if math.isinf(max(self.delays)) else f"{max(self.delays):.0f}")
        return (f"{self.name:<26}{self.frames:>7}{self.ms:>9.1f}{1000 / max(self.ms, 1e-9):>7.1f}"
                f"{_mean(self.j):>8.3f}{_mean(self.f):>8.3f}{_mean(self.presence):>10.3f}{delay:>8}")


HEADER = f"{'sequence':<26}{'frames':>7}{'ms/frm':>9}{'fps':>7}{'J':>8}{'F':>8}{'presence':>10}{'reacq':>8}"


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def run(sequence, core: HQSMemConfig, cpu: CpuBackendConfig, min_area: int, baselines: tuple[str, ...] = ()) -> Score:
    """Score the CPU backend (and the named OpenCV ``baselines``, timed in the same run) on ``sequence``
    (a Sequence or a Scene)."""
    session = TrackingSession(build_cpu_tracker(cpu, core))
    score = Score(sequence.name, len(sequence))
    full_area: dict[int, int] = {}
    gone_for = {oid: 0 for oid in sequence.object_ids}
    pending: dict[int, int | None] = {}  # object -> frame it re-entered (None: not half visible yet)
    boxers: dict[str, dict[int, object]] = {}
    for i in range(len(sequence)):
        frame, truth = sequence.frame(i)
        targets = sequence.targets() if i == 0 else []
        start = time.perf_counter()
        result = session.process(frame, targets).result
        score.seconds += time.perf_counter() - start
        if not result.ok:
            raise RuntimeError(f"{sequence.name} frame {i}: {result.status}")
        reported = {o.obj_id: o for o in result.objects}
        boxed = _run_baselines(baselines, boxers, frame, targets, score)
        frame_j = []
        for oid, gt in truth.items():
            area = int(gt.sum())
            full_area.setdefault(oid, area)
            visible = area >= max(min_area, 1)
            pred = reported[oid]
            score.presence.append(pred.present == visible)
            gt_box = mask_box(gt) if visible else None
            score.box.append(box_iou(mask_box(pred.mask) if pred.present else None, gt_box))
            for name, boxes in boxed.items():
                score.baselines.setdefault(name, []).append(box_iou(boxes.get(oid), gt_box))
            j = jaccard(pred.mask, gt)
            if visible:
                score.j.append(j)
                score.f.append(boundary_f(pred.mask, gt))
                frame_j.append(j)
            # re-acquisition bookkeeping
            if not visible:
                gone_for[oid] += 1
                continue
            if gone_for[oid] >= GAP:
                pending[oid] = None
            gone_for[oid] = 0
            if oid in pending:
                if pending[oid] is None and area >= REENTRY * full_area[oid]:
                    pending[oid] = i
                if pred.present and j >= 0.5:
                    entered = pending.pop(oid)
                    score.delays.append(0.0 if entered is None else float(i - entered))
        score.j_by_frame.append(_mean(frame_j))
    score.delays += [math.inf for entered in pending.values() if entered is not None]
    return score


def _run_baselines(names, boxers, frame, targets, score) -> dict[str, dict[int, tuple]]:
    """Each baseline's box per object on this frame (started on ``targets`` on frame 0); timed."""
    bgr = np.ascontiguousarray(frame[..., ::-1])
    out = {}
    for name in names:
        start = time.perf_counter()
        boxes = {}
        if targets:
            boxers[name] = {}
            for t in targets:
                x0, y0, x1, y1 = (int(round(v)) for v in t.box)
                tracker = baseline_factory(name)()
                tracker.init(bgr, (x0, y0, max(1, x1 - x0), max(1, y1 - y0)))
                boxers[name][t.obj_id] = tracker
                boxes[t.obj_id] = (x0, y0, x1, y1)
        else:
            for oid, tracker in boxers[name].items():
                ok, (x, y, bw, bh) = tracker.update(bgr)
                if ok and bw > 0 and bh > 0:
                    boxes[oid] = (x, y, x + bw, y + bh)
        score.baseline_seconds[name] = score.baseline_seconds.get(name, 0.0) + time.perf_counter() - start
        out[name] = boxes
    return out


def _split_table(split: str, kinds, frames, size, core, cpu, baselines) -> list[Score]:
    """One row per kind over the split's seeds (object-frames pooled), then the mean over kinds."""
    names = " ".join(f"{b:>7}" for b in baselines)
    print(f"\n{split} seeds {SPLITS[split]}: box IoU ours{' / ' + ' / '.join(baselines) if baselines else ''}"
          f"; J, F, presence; ms/frame ours{' / ' + ' / '.join(baselines) if baselines else ''}")
    print(f"{'kind':<16}{'frames':>7}{'box ours':>9}{names}{'J':>8}{'F':>8}{'presence':>10}{'ms ours':>9}"
          + "".join(f"{'ms ' + b:>9}" for b in baselines))
    rows = []
    for kind in kinds:
        total = Score(kind)
        for seed in SPLITS[split]:
            s = run(make_scene(kind, seed, frames(kind), size), core, cpu, core.tracker.min_area, baselines)
            total.frames += s.frames
            total.seconds += s.seconds
            total.j += s.j
            total.f += s.f
            total.presence += s.presence
            total.box += s.box
            for b in baselines:
                total.baselines.setdefault(b, []).extend(s.baselines[b])
                total.baseline_seconds[b] = total.baseline_seconds.get(b, 0.0) + s.baseline_seconds[b]
        rows.append(total)
        _print_split_row(total, baselines)
    mean = Score("mean of kinds", sum(r.frames for r in rows), sum(r.seconds for r in rows))
    print(f"{'mean of kinds':<16}{mean.frames:>7}{_mean([_mean(r.box) for r in rows]):>9.3f}"
          + "".join(f"{_mean([_mean(r.baselines[b]) for r in rows]):>7.3f}" for b in baselines)
          + f"{_mean([_mean(r.j) for r in rows]):>8.3f}{_mean([_mean(r.f) for r in rows]):>8.3f}"
          f"{_mean([_mean(r.presence) for r in rows]):>10.3f}{mean.ms:>9.1f}", flush=True)
    return rows


def _print_split_row(s: Score, baselines) -> None:
    print(f"{s.name:<16}{s.frames:>7}{_mean(s.box):>9.3f}"
          + "".join(f"{_mean(s.baselines[b]):>7.3f}" for b in baselines)
          + f"{_mean(s.j):>8.3f}{_mean(s.f):>8.3f}{_mean(s.presence):>10.3f}{s.ms:>9.1f}"
          + "".join(f"{1000 * s.baseline_seconds[b] / max(s.frames, 1):>9.1f}" for b in baselines), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("train", "fresh", "both", "none"), default="both",
                    help="scene seeds to run: train (tune on these only), fresh (report only), both, none")
    ap.add_argument("--kinds", nargs="+", choices=SCENE_KINDS, default=list(SCENE_KINDS))
    ap.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES),
                    help="OpenCV box trackers run on the scenes (need opencv-contrib; missing ones are skipped)")
    ap.add_argument("--sequences", nargs="*", choices=SEQUENCE_KINDS, default=[],
                    help="legacy sequences (core/sequences.py) to run as well")
    ap.add_argument("--frames", type=int, help="length of every scene / sequence (default: each kind's own)")
    ap.add_argument("--quick", action="store_true", help="short legacy sequences: " +
                    ", ".join(f"{k} {n}" for k, n in QUICK_FRAMES.items()))
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--seed", type=int, default=0, help="seed of the legacy sequences and the speed runs")
    ap.add_argument("--threads", type=int, default=0, help="CPU backend threads (0: its auto choice)")
    ap.add_argument("--speed-objects", type=int, nargs="*", default=[1, 3, 12],
                    help="also time the translation sequence with these object counts")
    ap.add_argument("--ablation", choices=("train", "fresh", "none"), default="fresh",
                    help="memory-policy ablation on this split's scenes and on the legacy ablation kinds at "
                    "the split's first seed")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="CpuBackendConfig overrides by dotted name, e.g. flow.enabled=false "
                    "redetection.similarity=0.5 (the deprecated flat names still work)")
    args = ap.parse_args(argv)

    try:
        cpu = from_flat(CpuBackendConfig(threads=args.threads), _overrides(args.set))
    except ValueError as exc:  # out of range, not one of the choices
        raise SystemExit(f"--set: {exc}")
    core = HQSMemConfig()
    size = tuple(args.size)
    missing = [b for b in args.baselines if baseline_factory(b) is None]
    if missing:
        print(f"baselines {', '.join(missing)} skipped: this OpenCV has no Tracker{missing[0].upper()}_create "
              "(pip install -r requirements/baselines.txt)")
    baselines = tuple(b for b in args.baselines if b not in missing)

    def length(kind: str) -> int | None:
        return args.frames or (QUICK_FRAMES[kind] if args.quick else None)

    def scene_length(kind: str) -> int:
        return args.frames or SCENE_FRAMES[kind]

    print(f"CPU backend, {size[1]}x{size[0]}, {CpuBackend.threads(cpu)} threads; {cpu}")
    for split in (("train", "fresh") if args.split == "both" else () if args.split == "none" else (args.split,)):
        _split_table(split, args.kinds, scene_length, size, core, cpu, baselines)

    if args.sequences or args.speed_objects:
        print(f"\nlegacy sequences, seed {args.seed}")
        print(HEADER)
    for kind in args.sequences:
        score = run(make_sequence(kind, length(kind), size, seed=args.seed), core, cpu, core.tracker.min_area)
        print(score.row(), flush=True)
        if kind == "long_loop" and len(score.j_by_frame) >= 200:
            k = min(500, len(score.j_by_frame) // 2)
            first, last = _mean(score.j_by_frame[:k]), _mean(score.j_by_frame[-k:])
            print(f"  drift: J first {k} frames {first:.3f}, last {k} frames {last:.3f} (diff {last - first:+.3f})")

    for n in args.speed_objects:
        seq: Sequence = make_sequence("translation", length("translation"), size, n_objects=n, seed=args.seed)
        seq.name = f"translation, {n} object{'s' * (n != 1)}"
        print(run(seq, core, cpu, core.tracker.min_area).row(), flush=True)

    if args.ablation != "none":
        seeds = SPLITS[args.ablation]
        print(f"\nmemory policy ablation, {args.ablation} seeds: scenes (mean over scenes) and legacy "
              f"{', '.join(ABLATION_KINDS)} at seed {seeds[0]}")
        print(f"{'policy':<16}{'scenes J':>9}{'F':>7}{'pres.':>7}"
              + "".join(f"{k + ' J/F':>24}" for k in ABLATION_KINDS))
        for policy in POLICIES:
            cfg = dataclasses.replace(core, memory=dataclasses.replace(MemoryConfig(), policy=policy))
            scenes = [run(make_scene(kind, seed, scene_length(kind), size), cfg, cpu, core.tracker.min_area)
                      for kind in args.kinds for seed in seeds]
            legacy = [run(make_sequence(kind, length(kind), size, seed=seeds[0]), cfg, cpu, core.tracker.min_area)
                      for kind in ABLATION_KINDS]
            print(f"{policy:<16}{_mean([_mean(s.j) for s in scenes]):>9.3f}{_mean([_mean(s.f) for s in scenes]):>7.3f}"
                  f"{_mean([_mean(s.presence) for s in scenes]):>7.3f}"
                  + "".join(f"{f'{_mean(s.j):.3f} / {_mean(s.f):.3f}':>24}" for s in legacy), flush=True)


def _overrides(items: list[str]) -> dict:
    """FIELD=VALUE items, each value of its field's type (a deprecated name's: its new name's)."""
    types = {s.name: type(s.default) for s in specs(CpuBackendConfig())}
    renamed = deprecated_names(CpuBackendConfig())
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        kind = types.get(renamed.get(name, name))
        if kind is None:
            raise SystemExit(f"unknown CpuBackendConfig field {name}")
        out[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


if __name__ == "__main__":
    main()
