"""Measure the GPU pipeline through the real tracker: per-stage latency, fps, and memory next to stock DeAOT's.

    python -m hqsmem_ros.tools.benchmark_gpu speed  [--frames 60] [--objects 1 3 10] [--precision fp16]
    python -m hqsmem_ros.tools.benchmark_gpu memory [--frames 2000] [--every 100]
    python -m hqsmem_ros.tools.gpu_check             # both, every precision, one JSON and one table

``HQSMemTracker.process`` runs every step of the method, built by the node's own factory
(``build_hqsmem_tracker``). Two hooks the core offers make the figures comparable whatever the weights:
``ForcePresent`` (the tracker's ``on_predictions``) lets the DeAOT step run and then hands the tracker the
frame's ground-truth masks as its predictions, so every object is present and gets proposals, verification
and memory on every frame; ``StageTimer`` (the runtime's ``on_stage``) times the SAM-HQ encoder, its decoder
and the DINO passes (a device sync on each side). Frames come from ``MovingObjects`` (numpy and OpenCV only:
the GPU machine has no scikit-image for ``core.sequences``' photos). Without real checkpoints
in ``--weights-dir`` random ones are written to a temporary folder: timings and memory are valid, masks
meaningless. Stock DeAOT runs as shipped (its own predictions feed its memory, as in aot's evaluator).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.backends.hqsmem import HQSMemBackend
from ..core.backends.hqsmem_config import DEAOT_MODELS, HQSMemPipelineConfig, pipeline_weights
from ..core.device import Runtime, resolve_device
from ..core.dino import DINO_MODELS
from ..core.factory import build_hqsmem_tracker
from ..core.samhq import SAM_MODELS
from ..core.session import TrackingSession
from ..core.tracker import HQSMemConfig, HQSMemTracker
from ..core.types import Frame, Prediction, Target
from ..core.weights import missing
from .weights import ensure_random


# -- measurement helpers --------------------------------------------------------------------------
def device_mb(device: torch.device) -> tuple[float | None, float | None]:
    """(allocated, reserved) CUDA memory in MB; (None, None) on the CPU."""
    if device.type != "cuda":
        return None, None
    return torch.cuda.memory_allocated(device) / 2**20, torch.cuda.memory_reserved(device) / 2**20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tensor_bytes(nested) -> int:
    if isinstance(nested, torch.Tensor):
        return nested.numel() * nested.element_size()
    if isinstance(nested, (list, tuple)):
        return sum(tensor_bytes(x) for x in nested)
    return 0


def slope(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(xs, ys, 1)[0]) if len(xs) > 1 else float("nan")


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"p50": float("nan"), "p99": float("nan"), "mean": float("nan")}
    ms = np.asarray(seconds) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())}


# -- frames --------------------------------------------------------------------------------------------
class MovingObjects:
    """``n_objects`` textured ellipses gliding over a textured background, with exact masks: what the
    timings need (objects the size of real ones, every one visible) from numpy and OpenCV alone."""

    def __init__(self, n_frames: int, size: tuple[int, int], n_objects: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        h, w = size
        self.n_frames, self.size, self.object_ids = n_frames, size, list(range(1, n_objects + 1))
        self.background = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        self.colours = rng.integers(40, 255, (n_objects, 3))
        side = min(h, w)
        self.radii = rng.uniform(0.06, 0.12, (n_objects, 2)) * side
        self.centres = rng.uniform(0.2, 0.8, (n_objects, 2)) * (w, h)
        self.phases = rng.uniform(0, 2 * np.pi, n_objects)

    def __len__(self) -> int:
        return self.n_frames

    def frame(self, t: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        h, w = self.size
        rgb = self.background.copy()
        label = np.zeros((h, w), np.uint8)
        for k, oid in enumerate(self.object_ids):  # later objects pass in front of earlier ones
            cx, cy = self.centres[k] + 0.15 * min(h, w) * np.array([np.cos(t / 25 + self.phases[k]),
                                                                      np.sin(t / 31 + self.phases[k])])
            axes = tuple(int(r) for r in self.radii[k])
            cv2.ellipse(label, (int(cx), int(cy)), axes, 0, 0, 360, oid, -1)
        for k, oid in enumerate(self.object_ids):
            rgb[label == oid] = (0.7 * self.colours[k] + 0.3 * rgb[label == oid]).astype(np.uint8)
        return rgb, {oid: label == oid for oid in self.object_ids}


# -- hooks on the real tracker ----------------------------------------------------------------------
class ForcePresent:
    """The tracker's prediction hook: the DeAOT step runs as usual, then its predictions are replaced by
    ``truth`` (the frame's ground-truth masks, confidence 1), so that every stage runs for every object
    whatever the weights. The tracker sequences everything else."""

    def __init__(self, tracker: HQSMemTracker):
        self.truth: dict[int, np.ndarray] = {}
        tracker.on_predictions = self

    def __call__(self, frame: Frame, preds: dict[int, Prediction]) -> dict[int, Prediction]:
        return {oid: Prediction(self.truth.get(oid, p.mask), 1.0) for oid, p in preds.items()}


class StageTimer:
    """The runtime's stage hook: seconds of the SAM-HQ encoder, its decoder and the DINO passes (the
    verifier's and the memory embedding's), per frame, by stage name."""

    def __init__(self, runtime: Runtime):
        self.device = runtime.device
        self.frame: dict[str, float] = defaultdict(float)
        runtime.on_stage = self.stage

    @contextmanager
    def stage(self, name: str):
        sync(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.frame[name] += time.perf_counter() - start


@dataclasses.dataclass
class Run:
    frames: int = 0  # frames processed, warm-up included
    frame_s: list[float] = dataclasses.field(default_factory=list)  # after warm-up
    stages: dict[str, list[float]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    samples: list[tuple] = dataclasses.field(default_factory=list)  # (frame, allocated MB, reserved MB, frames, bytes)
    truncated: bool = False

    def summary(self) -> dict:
        fps = len(self.frame_s) / sum(self.frame_s) if self.frame_s else float("nan")
        return {"frames": self.frames, "timed_frames": len(self.frame_s), "fps": fps,
                "frame_ms": percentiles_ms(self.frame_s), "truncated": self.truncated,
                "stages_ms": {s: percentiles_ms(v) for s, v in self.stages.items()}}


class Instrumented:
    """A tracker with both hooks installed, driven through the session the node uses."""

    def __init__(self, tracker: HQSMemTracker):
        self.tracker = tracker
        self.session = TrackingSession(tracker)
        self.device = tracker.backend.runtime.device
        self.force = ForcePresent(tracker)
        self.timer = StageTimer(tracker.backend.runtime)


def drive(inst: Instrumented, seq, frames: int, warmup: int, every: int = 0, until: float = float("inf")) -> Run:
    """``frames`` frames of ``seq`` through the session (as the node runs them) from a reset (every object
    starts on frame 0 from its ground-truth mask), stopping early at ``time.monotonic() >= until``; per-frame
    latency after ``warmup``, stages from the tracker's own timings and ``StageTimer``, memory every
    ``every`` frames."""
    tracker, device, force, timer, run = inst.tracker, inst.device, inst.force, inst.timer, Run()
    inst.session.reset()
    for t in range(frames):
        if time.monotonic() >= until:
            run.truncated = True
            break
        rgb, masks = seq.frame(t)
        force.truth = masks
        targets = [Target(oid, str(oid), mask=masks[oid]) for oid in seq.object_ids] if t == 0 else []
        timer.frame.clear()
        sync(device)
        start = time.perf_counter()
        result = inst.session.process(rgb, targets).result
        sync(device)
        elapsed = time.perf_counter() - start
        if not result.ok:
            raise RuntimeError(f"frame {t}: {result.status}")
        run.frames = t + 1
        if t >= warmup:
            run.frame_s.append(elapsed)
            for stage, seconds in {**result.timings, **timer.frame}.items():
                run.stages[stage].append(seconds)
        if every and (t % every == 0 or t == frames - 1):
            run.samples.append((t, *device_mb(device), result.memory_frames, tracker.backend.memory_bytes()))
    return run


def stock_run(backend: HQSMemBackend, seq, n: int, gap: int, every: int, until: float = float("inf")) -> Run:
    """Stock DeAOT (aot's multi-object engine, its own memory gap, as aot's evaluator drives it) on the
    backend's model over ``seq``, its input made by the backend's own ``input_image``: memory every ``every``
    frames. Its frames get a runtime of their own, whose upload cache the tracker's indices cannot hit."""
    from aot.networks.engines import build_engine

    runtime = Runtime(backend.runtime.device, backend.runtime.precision)
    source = HQSMemBackend(backend.model, runtime, backend.max_short_edge)
    engine = build_engine("deaotengine", phase="eval", aot_model=backend.model, gpu_id=runtime.device.index or 0,
                          long_term_mem_gap=gap)
    ids = seq.object_ids
    run = Run()
    for t in range(n):
        if time.monotonic() >= until:
            run.truncated = True
            break
        rgb, masks = seq.frame(t)
        start = time.perf_counter()
        with torch.inference_mode():
            image = source.input_image(Frame(t, rgb))  # outside autocast, as the backend makes it
            input_size = image.shape[-2:]
            with runtime.autocast():
                if t == 0:
                    label = torch.zeros((1, 1, *rgb.shape[:2]), device=runtime.device)
                    for slot, oid in enumerate(ids, 1):
                        label[0, 0][torch.from_numpy(masks[oid]).to(runtime.device)] = slot
                    engine.add_reference_frame(image, F.interpolate(label, size=input_size, mode="nearest"),
                                               obj_nums=[len(ids)], frame_step=0)
                else:
                    engine.match_propogate_one_frame(image)
                    logits = engine.decode_current_logits(input_size)
                    engine.update_memory(logits.argmax(1, keepdim=True).float())
        sync(runtime.device)
        run.frame_s.append(time.perf_counter() - start)
        run.frames = t + 1
        if every and (t % every == 0 or t == n - 1):
            sub = engine.aot_engines[0]
            frames = sub.long_term_memories[0][0].shape[0] // sub.enc_hw
            nbytes = sum(tensor_bytes(e.long_term_memories) for e in engine.aot_engines)
            run.samples.append((t, *device_mb(runtime.device), frames, nbytes))
    del engine
    return run


def memory_summary(run: Run) -> dict:
    """Memory at the first and last sample and its slope per 1,000 frames over the second half (past the
    filling of smart memory)."""
    rows = run.samples
    late = [r for r in rows if r[0] >= rows[-1][0] // 2] if rows else []
    ts = [r[0] for r in late]
    out = {"frames": run.frames, "truncated": run.truncated, "memory_frames_max": max((r[3] for r in rows), default=0)}
    for i, name in ((1, "allocated_mb"), (2, "reserved_mb"), (4, "memory_tensors_mb")):
        values = [r[i] / (2**20 if i == 4 else 1) for r in rows if r[i] is not None]
        if values:
            out[name] = {"start": values[0], "end": values[-1],
                         "slope_per_1000": slope(ts, [r[i] / (2**20 if i == 4 else 1) for r in late]) * 1000}
    return out


# -- configuration ---------------------------------------------------------------------------------
def pipeline_config(args, precision: str | None = None) -> HQSMemPipelineConfig:
    """The configuration ``args`` ask for, with random weights written to a temporary folder when the
    checkpoints are missing there (said on stdout)."""
    config = HQSMemPipelineConfig(str(args.weights_dir or ""), device=args.device,
                               precision=precision or args.precision, model=args.model,
                               max_short_edge=args.max_short_edge, sam_model=args.sam_model,
                               dino_model=args.dino_model)
    gone = missing(pipeline_weights(config))
    if gone:
        folder = Path(tempfile.gettempdir()) / "hqsmem_random_weights"
        print(f"# weights missing ({', '.join(gone)}): using RANDOM weights from {folder} "
              f"(timings and memory valid, masks meaningless)")
        ensure_random(folder, (config.model, config.sam_model, config.dino_model))
        config = dataclasses.replace(config, weights_dir=str(folder))
    return config


def build(config: HQSMemPipelineConfig, refine: bool, core: HQSMemConfig = HQSMemConfig()) -> HQSMemTracker:
    """The full pipeline (``refine``) or DeAOT + smart memory alone, through the node's own factory."""
    if not refine:
        config = dataclasses.replace(config, sam_hq=False, memory_embedding="backbone")
    return build_hqsmem_tracker(config, core)


def describe(tracker: HQSMemTracker) -> str:
    runtime = tracker.backend.runtime
    card = torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else "CPU"
    dtype = str(runtime.dtype).removeprefix("torch.") if runtime.dtype else "float32"
    return f"{runtime.device} ({card}), {dtype}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"


# -- the two modes ----------------------------------------------------------------------------------
def run_speed(args) -> None:
    config = pipeline_config(args)
    trackers = {"full": Instrumented(build(config, True)), "deaot": Instrumented(build(config, False))}
    print(f"# {describe(trackers['full'].tracker)}; {args.frames} frames ({args.warmup} warm-up) at "
          f"{args.size[0]}x{args.size[1]}, every object forced present")
    stages = ("base", "sam_encoder", "sam_decoder", "dino", "refine", "memory")
    print("objects  pipeline  " + "  ".join(f"{s:>11s}" for s in stages) + "    p50_ms    p99_ms       fps")
    for n in args.objects:
        seq = MovingObjects(args.frames, tuple(args.size), n)
        for name, inst in trackers.items():
            s = drive(inst, seq, args.frames, args.warmup).summary()
            cells = "  ".join(f"{s['stages_ms'][st]['p50'] if st in s['stages_ms'] else float('nan'):11.1f}"
                              for st in stages)
            print(f"{n:7d}  {name:>8s}  {cells}  {s['frame_ms']['p50']:8.1f}  {s['frame_ms']['p99']:8.1f}  "
                  f"{s['fps']:8.2f}")


def run_memory(args) -> None:
    config = pipeline_config(args)
    tracker = build(config, True)
    runtime = tracker.backend.runtime
    seq = MovingObjects(args.frames, tuple(args.size), 3)
    print(f"# {describe(tracker)}; {args.frames} frames at {args.size[0]}x{args.size[1]}, 3 objects, memory gap "
          f"{tracker.config.memory.update_every}, smart memory K={tracker.config.memory.capacity} (+ pinned)")
    smart = drive(Instrumented(tracker), seq, args.frames, 0, every=args.every)
    tracker.reset()
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()
    stock = stock_run(tracker.backend, seq, args.frames, tracker.config.memory.update_every, args.every)
    for name, run in (("smart", smart), ("stock", stock)):
        print(f"\n{name}: frame  mem_frames  mem_MB  alloc_MB  reserved_MB")
        for t, alloc, reserved, frames, nbytes in run.samples:
            print(f"{name}: {t:5d}  {frames:10d}  {nbytes / 2**20:6.1f}  {'-' if alloc is None else f'{alloc:.0f}':>8s}"
                  f"  {'-' if reserved is None else f'{reserved:.0f}':>11s}")
        summary = memory_summary(run)
        print(f"{name}: per 1000 frames over the second half: " + ", ".join(
            f"{k} {v['slope_per_1000']:+.2f}" for k, v in summary.items() if isinstance(v, dict)))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=DEAOT_MODELS, default="deaott")
    parser.add_argument("--sam-model", choices=SAM_MODELS, default="vit_tiny")
    parser.add_argument("--dino-model", choices=DINO_MODELS, default=DINO_MODELS[0])
    parser.add_argument("--weights-dir", type=Path, default=None, help="real checkpoints (default: random ones)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-short-edge", type=int, default=480)
    parser.add_argument("--size", type=lambda s: [int(v) for v in s.split("x")], default=[480, 640],
                        help="frame size HxW (default 480x640)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("memory", "speed"))
    parser.add_argument("--frames", type=int, default=None, help="frames (memory: 2000 on GPU, 300 on CPU; speed: 60)")
    parser.add_argument("--every", type=int, default=None, help="memory: a sample every N frames (frames/10)")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3, 10], help="speed: object counts")
    parser.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--warmup", type=int, default=5)
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    on_gpu = resolve_device(args.device).type == "cuda"
    if args.mode == "memory":
        args.frames = args.frames or (2000 if on_gpu else 300)
        args.every = args.every or max(1, args.frames // 10)
        run_memory(args)
    else:
        args.frames = args.frames or 60
        run_speed(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
