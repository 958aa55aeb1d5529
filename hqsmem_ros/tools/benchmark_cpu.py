"""Benchmark of the CPU backend on the synthetic sequences (core/sequences.py), through the whole
tracker loop (``HQSMemTracker.process``, targets on frame 0).

Per sequence: frames, ms per frame, fps, mean J and boundary F over the frames where an object is
visible, presence accuracy over all object-frames, and the re-acquisition delay: after an object was
out of sight for at least 5 frames, the frames from the moment half of it is visible again until the
tracker reports it present with J >= 0.5 (worst case over the sequence's re-entries). Then the speed
with 1 and 12 objects, and the memory-policy ablation (fifo / smart / reference_only).

    python -m hqsmem_ros.tools.benchmark_cpu              # everything, full lengths
    python -m hqsmem_ros.tools.benchmark_cpu --quick      # short versions (a few minutes)
    python -m hqsmem_ros.tools.benchmark_cpu --sequences occlusion exit_reentry --frames 100
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..core.backends.cpu import CpuBackendConfig, build_cpu_tracker
from ..core.memory import POLICIES, MemoryConfig
from ..core.metrics import boundary_f, jaccard
from ..core.sequences import SEQUENCE_KINDS, Sequence, make_sequence
from ..core.tracker import HQSMemConfig, check_target

QUICK_FRAMES = dict(translation=60, scale_rotation=80, occlusion=150, exit_reentry=160, distractor=120,
                    small_objects=60, appearance_change=300, long_loop=600)
ABLATION_KINDS = ("appearance_change", "long_loop")
GAP = 5          # frames out of sight that make the next appearance a re-entry
REENTRY = 0.5    # share of its frame-0 area visible again that counts as re-entered


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


def run(sequence: Sequence, core: HQSMemConfig, cpu: CpuBackendConfig, min_area: int) -> Score:
    tracker = build_cpu_tracker(cpu, core)
    score = Score(sequence.name, len(sequence))
    full_area: dict[int, int] = {}
    gone_for = {oid: 0 for oid in sequence.object_ids}
    pending: dict[int, int | None] = {}  # object -> frame it re-entered (None: not half visible yet)
    for i in range(len(sequence)):
        frame, truth = sequence.frame(i)
        targets = [check_target(t, frame.shape[:2]) for t in sequence.targets()] if i == 0 else []
        start = time.perf_counter()
        result = tracker.process(frame, targets)
        score.seconds += time.perf_counter() - start
        if not result.ok:
            raise RuntimeError(f"{sequence.name} frame {i}: {result.status}")
        reported = {o.obj_id: o for o in result.objects}
        frame_j = []
        for oid, gt in truth.items():
            area = int(gt.sum())
            full_area.setdefault(oid, area)
            visible = area >= max(min_area, 1)
            pred = reported[oid]
            score.presence.append(pred.present == visible)
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", nargs="+", choices=SEQUENCE_KINDS, default=list(SEQUENCE_KINDS))
    ap.add_argument("--frames", type=int, help="length of every sequence (default: each kind's own)")
    ap.add_argument("--quick", action="store_true", help="short sequences: " +
                    ", ".join(f"{k} {n}" for k, n in QUICK_FRAMES.items()))
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-objects", type=int, nargs="*", default=[1, 12],
                    help="also time the translation sequence with these object counts")
    ap.add_argument("--no-ablation", action="store_true", help="skip the memory-policy ablation")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="CpuBackendConfig overrides, e.g. flow=false redetect_similarity=0.5")
    args = ap.parse_args(argv)

    cpu = dataclasses.replace(CpuBackendConfig(threads=args.threads), **_overrides(args.set))
    core = HQSMemConfig()
    size = tuple(args.size)

    def length(kind: str) -> int | None:
        return args.frames or (QUICK_FRAMES[kind] if args.quick else None)

    print(f"CPU backend, {size[1]}x{size[0]}, {args.threads} threads, seed {args.seed}; {cpu}")
    print(HEADER)
    for kind in args.sequences:
        score = run(make_sequence(kind, length(kind), size, seed=args.seed), core, cpu, core.tracker.min_area)
        print(score.row(), flush=True)
        if kind == "long_loop" and len(score.j_by_frame) >= 200:
            k = min(500, len(score.j_by_frame) // 2)
            first, last = _mean(score.j_by_frame[:k]), _mean(score.j_by_frame[-k:])
            print(f"  drift: J first {k} frames {first:.3f}, last {k} frames {last:.3f} (diff {last - first:+.3f})")

    for n in args.speed_objects:
        seq = make_sequence("translation", length("translation"), size, n_objects=n, seed=args.seed)
        seq.name = f"translation, {n} object{'s' * (n != 1)}"
        print(run(seq, core, cpu, core.tracker.min_area).row(), flush=True)

    if not args.no_ablation:
        print("\nmemory policy ablation")
        print(HEADER)
        for kind in ABLATION_KINDS:
            seq = make_sequence(kind, length(kind), size, seed=args.seed)
            for policy in POLICIES:
                seq.name = f"{kind} [{policy}]"
                cfg = dataclasses.replace(core, memory=dataclasses.replace(MemoryConfig(), policy=policy))
                print(run(seq, cfg, cpu, core.tracker.min_area).row(), flush=True)


def _overrides(items: list[str]) -> dict:
    types = {f.name: type(f.default) for f in dataclasses.fields(CpuBackendConfig)}
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in types:
            raise SystemExit(f"unknown CpuBackendConfig field {name}")
        out[name] = value.lower() in ("1", "true", "yes") if types[name] is bool else types[name](value)
    return out


if __name__ == "__main__":
    main()
