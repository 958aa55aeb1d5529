"""The GPU pipeline's first-contact check: one command, no network, no ROS, within minutes.

    python -m hqsmem_ros.tools.gpu_check [--out out/gpu_check.json] [--budget 270]
    python -m hqsmem_ros.tools.gpu_check --jetson   # Orin Nano set: DeAOT-T + Light HQ-SAM + ViT-S/16, fp16 only
    python -m hqsmem_ros.tools.gpu_check --quick    # CPU, tiny sizes, seconds: the test suite runs this
    scripts/gpu_check.sh                            # installs the carried wheels first, then this

In one run: writes random weights in the official layouts (or uses real ones from ``--weights-dir``) and
builds the pipeline from them with the node's own builder; runs the full pipeline (DeAOT + smart memory +
SAM-HQ proposals verified by DINO) and DeAOT + smart memory alone on the same frames at 640x480 with 1, 3
and 10 objects in fp32, fp16 and bf16: per-stage latency p50/p99, fps, and the refinement overhead as the
ratio of the two (median frame time); then GPU memory (allocated and reserved, slope per 1,000 frames) over
2,000 frames of the full pipeline next to stock DeAOT's on the same frames. Every object is forced present
(``benchmark_gpu.ForcePresent``, the tracker's prediction hook), so every stage runs on every frame whatever
the weights. Writes one JSON, prints one table. A time guard (``--budget``) cuts runs short rather than
overrun; cut runs say so.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from ..core.backends.hqsmem_config import DEAOT_MODELS, HQSMemPipelineConfig
from ..core.dino import DINO_MODELS
from ..core.samhq import SAM_MODELS
from ..core.weights import CHECKPOINTS
from .benchmark_gpu import Instrumented, MovingObjects, build, describe, drive, memory_summary, stock_run
from .weights import ensure_random

STAGES = ("base", "sam_encoder", "sam_decoder", "dino", "refine", "memory")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and frame counts of one kind of run, budgeted to end in time."""

    device: str
    size: tuple[int, int]
    objects: tuple[int, ...]
    precisions: tuple[str, ...]
    frames: int  # per speed run, warm-up included
    warmup: int
    run_s: float  # most seconds per speed run
    memory_frames: int
    every: int  # a memory sample every this many frames
    memory_s: float  # most seconds for the full pipeline's memory run
    stock_s: float  # most seconds for stock DeAOT's
    dino_crop: int = 224
    refine_in_memory_run: bool = True


# On the H200: 18 speed runs of <= 6 s and 2,000 frames of each memory run (<= 100 s + <= 40 s): <= 250 s.
GPU = Plan("cuda", (480, 640), (1, 3, 10), ("fp16", "fp32", "bf16"), frames=110, warmup=10, run_s=6.0,
           memory_frames=2000, every=50, memory_s=100.0, stock_s=40.0)
JETSON = dataclasses.replace(GPU, precisions=("fp16",))
# On a CPU SAM-HQ's encoder (1024 px input whatever the frame) takes seconds: it runs on one timed frame per
# object count, and the memory run switches refinement off (refiner.enabled, a run-time parameter).
QUICK = Plan("cpu", (96, 128), (1, 3), ("fp32",), frames=2, warmup=1, run_s=120.0, memory_frames=12, every=3,
             memory_s=60.0, stock_s=60.0, dino_crop=56, refine_in_memory_run=False)


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _ms(summary: dict, stage: str) -> float | None:
    return summary["stages_ms"].get(stage, {}).get("p50")


def speed_rows(plan: Plan, config: HQSMemPipelineConfig, until: float) -> tuple[list[dict], dict]:
    """Speed runs of every object count in one precision; returns them and the two trackers."""
    trackers = {"full": Instrumented(build(config, True)), "deaot": Instrumented(build(config, False))}
    rows = []
    for n in plan.objects:
        seq = MovingObjects(plan.frames, plan.size, n)
        row = {"precision": config.precision, "objects": n}
        for name, inst in trackers.items():
            try:
                row[name] = drive(inst, seq, plan.frames, plan.warmup,
                                  until=min(until, time.monotonic() + plan.run_s)).summary()
            except Exception as exc:  # one failing configuration must not cost the others' figures
                row[name] = {"error": f"{type(exc).__name__}: {exc}"}
        if "error" not in row["full"] and "error" not in row["deaot"]:
            full, alone = row["full"]["frame_ms"], row["deaot"]["frame_ms"]
            row["overhead"] = {k: full[k] / alone[k] for k in ("p50", "mean")}  # full pipeline / DeAOT alone
        rows.append(row)
        print(f"# {config.precision}, {n} objects: full {row['full'].get('fps', row['full'].get('error'))} fps, "
              f"DeAOT alone {row['deaot'].get('fps', row['deaot'].get('error'))} fps", flush=True)
    return rows, trackers


def memory_rows(plan: Plan, inst: Instrumented, until: float) -> dict:
    """The full pipeline's memory over ``plan.memory_frames`` frames with 3 objects, then stock DeAOT's."""
    tracker = inst.tracker
    seq = MovingObjects(plan.memory_frames, plan.size, 3)
    config = tracker.config
    if not plan.refine_in_memory_run:
        tracker.configure(dataclasses.replace(config, refiner=dataclasses.replace(config.refiner, enabled=False)))
    smart = drive(inst, seq, plan.memory_frames, 0, every=plan.every,
                  until=min(until, time.monotonic() + plan.memory_s))
    tracker.configure(config)
    tracker.reset()
    _release()
    stock = stock_run(tracker.backend, seq, plan.memory_frames, config.memory.update_every, plan.every,
                      until=min(until, time.monotonic() + plan.stock_s))
    _release()
    return {"objects": 3,
            "refinement": plan.refine_in_memory_run, "memory_gap": config.memory.update_every,
            "capacity": config.memory.capacity,
            "smart": {**memory_summary(smart), **smart.summary()},
            "stock": {**memory_summary(stock), **stock.summary()}}


def targets(rows: list[dict], memory: dict | None) -> dict:
    """The issue's targets, judged on this run (fp16, 3 objects)."""
    row = next((r for r in rows if r["precision"] == "fp16" and r.get("objects") == 3), None)
    out = {}
    if row is not None and "overhead" in row:
        out["fps_3_objects_fp16_at_least_30"] = row["full"]["fps"] >= 30
        out["p99_3_objects_fp16_at_most_50_ms"] = row["full"]["frame_ms"]["p99"] <= 50
        out["overhead_3_objects_fp16_at_most_1.5"] = row["overhead"]["p50"] <= 1.5
    if memory is not None and "allocated_mb" in memory.get("smart", {}) and "allocated_mb" in memory["stock"]:
        out["memory_slope_under_1_mb_per_1000_frames"] = abs(memory["smart"]["allocated_mb"]["slope_per_1000"]) < 1
        out["stock_deaot_memory_grows"] = memory["stock"]["allocated_mb"]["slope_per_1000"] >= 1
    return out


def table(rows: list[dict], memory: dict | None) -> str:
    """One markdown table: per precision and object count the full pipeline and DeAOT alone, then the two
    memory runs (their memory columns filled)."""
    def cell(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    head = ("run", "precision", "objects", "frames", "fps", "p50 ms", "p99 ms", "overhead", *STAGES,
            "alloc MB start→end", "reserved MB start→end", "alloc slope /1000 f", "reserved slope /1000 f")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(name, precision, objects, s, overhead=None, mem=None):
        if "error" in s:
            lines.append(f"| {name} | {precision} | {objects} | failed: {s['error'][:200]} |")
            return
        cells = [name, precision, str(objects), f"{s['timed_frames']}{' (cut)' if s['truncated'] else ''}",
                 cell(s["fps"]), cell(s["frame_ms"]["p50"]), cell(s["frame_ms"]["p99"]), cell(overhead, "{:.2f}×"),
                 *(cell(_ms(s, st)) for st in STAGES)]
        for key in ("allocated_mb", "reserved_mb"):
            m = (mem or {}).get(key)
            cells.append("-" if m is None else f"{m['start']:.0f}→{m['end']:.0f}")
        for key in ("allocated_mb", "reserved_mb"):
            m = (mem or {}).get(key)
            cells.append("-" if m is None else f"{m['slope_per_1000']:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")

    for r in rows:
        if "full" not in r:  # the precision failed to build
            lines.append(f"| both pipelines | {r['precision']} | - | failed: {r['error'][:200]} |")
            continue
        line("full pipeline", r["precision"], r["objects"], r["full"], r.get("overhead", {}).get("p50"))
        line("DeAOT alone", r["precision"], r["objects"], r["deaot"])
    if memory is not None and "error" in memory:
        lines.append(f"| memory runs | {memory['precision']} | 3 | failed: {memory['error'][:200]} |")
    elif memory is not None:
        precision = memory["precision"]
        line(f"full pipeline, memory{'' if memory['refinement'] else ' (refiner off)'}", precision, 3,
             memory["smart"], mem=memory["smart"])
        line("stock DeAOT, memory", precision, 3, memory["stock"], mem=memory["stock"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU, tiny sizes (the test suite's run)")
    mode.add_argument("--jetson", action="store_true", help="the Orin Nano set in fp16 only")
    parser.add_argument("--out", type=Path, default=Path("out/gpu_check.json"))
    parser.add_argument("--budget", type=float, default=270.0, help="seconds; runs are cut short past it")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="real checkpoints (default: random ones in the official layouts, written first)")
    parser.add_argument("--model", choices=DEAOT_MODELS, default="deaott")
    parser.add_argument("--sam-model", choices=SAM_MODELS, default="vit_tiny")
    parser.add_argument("--dino-model", choices=DINO_MODELS, default=DINO_MODELS[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    start = time.monotonic()
    until = start + args.budget
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else JETSON if args.jetson else GPU
    if args.jetson:  # DeAOT-T + Light HQ-SAM (TinyViT) + DINO ViT-S/16: about 80 MB of fp16 weights
        args.model, args.sam_model, args.dino_model = "deaott", "vit_tiny", "vit_small_patch16_224.dino"
    if plan.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --quick on a CPU")
    models = (args.model, args.sam_model, args.dino_model)

    with tempfile.TemporaryDirectory(prefix="hqsmem_gpu_check_") as scratch:
        folder = args.weights_dir or Path(scratch)
        written = time.monotonic()
        if args.weights_dir is None:
            ensure_random(folder, models)
        weights = {"dir": str(folder), "random": args.weights_dir is None,
                   "write_s": time.monotonic() - written,
                   "files": {m: (folder / CHECKPOINTS[m].filename).stat().st_size for m in models}}
        rows, memory, info = [], None, None
        for precision in plan.precisions:
            config = HQSMemPipelineConfig(str(folder), device=plan.device, precision=precision, model=args.model,
                                          sam_model=args.sam_model, dino_model=args.dino_model,
                                          dino_crop=plan.dino_crop)
            try:
                new, trackers = speed_rows(plan, config, until)
            except Exception as exc:  # e.g. a precision the device cannot build: the others still run
                rows.append({"precision": precision, "error": f"{type(exc).__name__}: {exc}"})
                print(f"# {precision}: failed: {rows[-1]['error']}", flush=True)
                continue
            rows += new
            info = info or describe(trackers["full"].tracker)
            if memory is None:  # the first precision (fp16 on a GPU): the node's default
                later = (len(plan.precisions) - 1) * len(plan.objects) * 2 * plan.run_s  # kept for the others
                try:
                    memory = {"precision": precision, **memory_rows(plan, trackers["full"], until - later)}
                except Exception as exc:
                    memory = {"precision": precision, "error": f"{type(exc).__name__}: {exc}"}
            del trackers
            _release()

    result = {"tool": "hqsmem_ros.tools.gpu_check",
              "mode": "quick" if args.quick else "jetson" if args.jetson else "gpu",
              "device": info, "python": platform.python_version(), "torch": torch.__version__,
              "models": dict(zip(("deaot", "sam_hq", "dino"), models)), "frame_size": list(plan.size),
              "plan": dataclasses.asdict(plan), "weights": weights, "speed": rows, "memory": memory,
              "targets": targets(rows, memory), "elapsed_s": time.monotonic() - start,
              "within_budget": time.monotonic() <= until}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\n# {info}; {'RANDOM' if weights['random'] else 'real'} weights; {args.model} + {args.sam_model} + "
          f"{args.dino_model}; {plan.size[1]}x{plan.size[0]}; stage columns: p50 ms")
    print(table(rows, memory))
    print(f"\n# targets: {json.dumps(result['targets'])}; {result['elapsed_s']:.0f} s; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
