"""Measure the GPU pipeline: memory growth (stock DeAOT vs smart memory) and per-stage speed.

    python -m hqsmem_ros.tools.benchmark_gpu memory [--frames 3000] [--every 100] [--size 480x640]
    python -m hqsmem_ros.tools.benchmark_gpu speed  [--frames 30] [--objects 1 3 10] [--size 480x640]

Frames come from ``core.sequences`` with exact ground-truth masks. Both modes force every object
present by accepting the ground-truth masks (the tracker's call sequence with perfect teacher forcing),
so each stage runs on every frame whatever the weights: without real checkpoints in ``--weights-dir``
random ones are written to a temporary folder, which makes the timings and memory figures valid and the
masks meaningless. Stock DeAOT runs as shipped (its own predictions feed its memory, as in aot's evaluator).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.backends.deaot import (DEAOT_MODELS, DeAOTBackend, GpuPipelineConfig, build_deaot, deaot_input_size,
                                   pipeline_weights)
from ..core.device import Runtime, resolve_device
from ..core.dino import IMAGENET_MEAN, IMAGENET_STD, DinoVerifier, build_dino
from ..core.memory import MemoryConfig, SmartMemory
from ..core.samhq import SamHQProposer, build_sam_hq
from ..core.sequences import make_sequence
from ..core.tracker import update_memory
from ..core.types import mask_box
from ..core.weights import missing
from .weights import ensure_random


# -- measurement helpers --------------------------------------------------------------------------
def rss_mb() -> float:
    """Resident set size now (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cuda_peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


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


def load_config(args) -> tuple[GpuPipelineConfig, Runtime]:
    config = GpuPipelineConfig(str(args.weights_dir or ""), device=args.device, precision=args.precision,
                               model=args.model, max_short_edge=args.max_short_edge)
    gone = missing(pipeline_weights(config))
    if gone:
        folder = Path(tempfile.gettempdir()) / "hqsmem_random_weights"
        print(f"# weights missing ({', '.join(gone)}): using RANDOM weights from {folder} "
              f"(timings and memory valid, masks meaningless)")
        ensure_random(folder, (config.model, config.sam_model, config.dino_model))
        config = dataclasses.replace(config, weights_dir=str(folder))
    runtime = Runtime(resolve_device(config.device), config.precision)
    card = torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else "CPU"
    print(f"# device {runtime.device} ({card}), "
          f"precision {config.precision if runtime.dtype else 'fp32'}, torch threads {torch.get_num_threads()}, "
          f"model {config.model}, frames {args.size[0]}x{args.size[1]}")
    return config, runtime


# -- memory ------------------------------------------------------------------------------------------
def stock_run(model, runtime: Runtime, seq, n: int, gap: int, every: int, input_size) -> list[tuple]:
    from aot.networks.engines import build_engine

    engine = build_engine("deaotengine", phase="eval", aot_model=model, gpu_id=runtime.device.index or 0,
                          long_term_mem_gap=gap)
    ids = seq.object_ids
    mean = torch.tensor(IMAGENET_MEAN, device=runtime.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=runtime.device).view(1, 3, 1, 1)
    rows = []
    for t in range(n):
        rgb, masks = seq.frame(t)
        image = runtime.upload(rgb)
        image = F.interpolate(image, size=input_size, mode="bilinear", align_corners=False, antialias=True)
        image = (image / 255 - mean) / std
        start = time.perf_counter()
        with torch.inference_mode(), runtime.autocast():
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
        elapsed = time.perf_counter() - start
        if t % every == 0 or t == n - 1:
            sub = engine.aot_engines[0]
            frames = sub.long_term_memories[0][0].shape[0] // sub.enc_hw
            rows.append((t, frames, sum(tensor_bytes(e.long_term_memories) for e in engine.aot_engines), rss_mb(),
                         cuda_peak_mb(runtime.device), elapsed))
    return rows


def smart_run(model, runtime: Runtime, seq, n: int, memory_config: MemoryConfig, every: int) -> list[tuple]:
    backend = DeAOTBackend(model, runtime)
    memory = SmartMemory(memory_config)
    rows = []
    for t in range(n):
        rgb, masks = seq.frame(t)
        start = time.perf_counter()
        backend.step(rgb)
        if t == 0:
            for oid in seq.object_ids:
                backend.add_object(oid, rgb, masks[oid], key=0)
                memory.pin(0, 0, backend.embed({oid: masks[oid]}), owner=oid)
        visible = {oid: m for oid, m in masks.items() if m.any()}
        backend.accept(masks)
        if visible and t % memory_config.update_every == 0:
            update_memory(memory, backend, t, visible)
        sync(runtime.device)
        elapsed = time.perf_counter() - start
        if t % every == 0 or t == n - 1:
            rows.append((t, len(backend.memory_keys()), backend.memory_bytes(), rss_mb(),
                         cuda_peak_mb(runtime.device), elapsed))
    return rows


def run_memory(args) -> None:
    config, runtime = load_config(args)
    model = build_deaot(config.model, pipeline_weights(config)[config.model], runtime.device).to(runtime.device)
    seq = make_sequence("long_loop", args.frames, size=tuple(args.size))
    input_size = deaot_input_size(*args.size, config.max_short_edge, model.cfg.MODEL_ALIGN_CORNERS)
    memory_config = MemoryConfig(capacity=args.capacity, update_every=args.gap)
    print(f"# long_loop sequence, {args.frames} frames, {len(seq.object_ids)} objects, memory gap {args.gap}, "
          f"smart memory K={args.capacity} (+1 pinned reference frame)")
    for name, run in (("smart", lambda: smart_run(model, runtime, seq, args.frames, memory_config, args.every)),
                      ("stock", lambda: stock_run(model, runtime, seq, args.frames, args.gap, args.every,
                                                  input_size))):
        if runtime.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(runtime.device)
        rows = run()
        print(f"\n{name}: frame  mem_frames  mem_MB  rss_MB  cuda_peak_MB  frame_ms")
        for t, frames, nbytes, rss, peak, elapsed in rows:
            print(f"{name}: {t:5d}  {frames:10d}  {nbytes / 2**20:6.1f}  {rss:6.0f}  "
                  f"{'-' if peak is None else f'{peak:.0f}':>12s}  {elapsed * 1e3:8.1f}")
        late = [r for r in rows if r[0] >= args.frames // 2]  # past the filling of smart memory
        ts = [r[0] for r in late]
        print(f"{name}: slope over frames {ts[0]}..{ts[-1]}: "
              f"{slope(ts, [r[1] for r in late]) * 100:.2f} memory frames / 100 frames, "
              f"{slope(ts, [r[2] / 2**20 for r in late]) * 100:.2f} MB / 100 frames (memory tensors), "
              f"{slope(ts, [r[3] for r in late]) * 100:.2f} MB / 100 frames (RSS)")


# -- speed -------------------------------------------------------------------------------------------
def timed(device: torch.device, fn, *args):
    sync(device)
    start = time.perf_counter()
    out = fn(*args)
    sync(device)
    return out, time.perf_counter() - start


def run_speed(args) -> None:
    config, runtime = load_config(args)
    paths = pipeline_weights(config)
    dev = runtime.device
    model = build_deaot(config.model, paths[config.model], dev)
    sam = SamHQProposer(build_sam_hq(config.sam_model, paths[config.sam_model], dev), runtime)
    dino = DinoVerifier(build_dino(config.dino_model, paths[config.dino_model]), runtime, config.dino_crop,
                        config.dino_context)
    stages = ("base", "sam_encoder", "sam_decoder", "dino", "memory")
    print(f"# per-stage latency in ms (mean over frames {args.warmup}..{args.frames - 1}; first {args.warmup} "
          f"are warm-up), every object forced present")
    print("objects  " + "  ".join(f"{s:>11s}" for s in stages) + "  base_fps  full_fps  full/base")
    for n_objects in args.objects:
        seq = make_sequence("small_objects", args.frames, size=tuple(args.size), n_objects=n_objects)
        backend = DeAOTBackend(model, runtime, config.max_short_edge, embedder=dino)
        memory = SmartMemory(MemoryConfig(capacity=args.capacity, update_every=args.gap))
        times = {s: [] for s in stages}
        for t in range(args.frames):
            rgb, masks = seq.frame(t)
            _, base = timed(dev, backend.step, rgb)
            if t == 0:
                for oid in seq.object_ids:
                    backend.add_object(oid, rgb, masks[oid], key=0)
                    memory.pin(0, 0, backend.embed({oid: masks[oid]}), owner=oid)
            present = {oid: m for oid, m in masks.items() if m.any()}
            boxes = np.array([mask_box(m) for m in present.values()], np.float32)
            encoded, enc = timed(dev, sam.encode, rgb)
            (cands, _), dec = timed(dev, lambda: tuple(x.cpu() for x in sam.decode(encoded, boxes, rgb.shape[:2])))
            batch = [m for i, base_mask in enumerate(present.values()) for m in [base_mask, *cands[i].numpy()]]
            _, ver = timed(dev, dino.features, rgb, batch)

            def update():
                backend.accept(masks)
                if t % args.gap == 0:
                    update_memory(memory, backend, t, present)
            _, mem = timed(dev, update)
            if t >= args.warmup:
                for s, v in zip(stages, (base, enc, dec, ver, mem)):
                    times[s].append(v)
        mean = {s: float(np.mean(v)) for s, v in times.items()}
        base_alone = mean["base"] + mean["memory"]
        full = sum(mean.values())
        print(f"{n_objects:7d}  " + "  ".join(f"{mean[s] * 1e3:11.1f}" for s in stages) +
              f"  {1 / base_alone:8.2f}  {1 / full:8.2f}  {full / base_alone:9.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("memory", "speed"))
    parser.add_argument("--frames", type=int, default=None, help="frames (memory: 3000 on GPU, 300 on CPU; "
                                                                  "speed: 30)")
    parser.add_argument("--every", type=int, default=None, help="memory: print every N frames (frames/10)")
    parser.add_argument("--size", type=lambda s: [int(v) for v in s.split("x")], default=[480, 640],
                        help="frame size HxW (default 480x640)")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3, 10], help="speed: object counts")
    parser.add_argument("--model", choices=DEAOT_MODELS, default="deaott")
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--max-short-edge", type=int, default=480)
    parser.add_argument("--capacity", type=int, default=6, help="smart memory K")
    parser.add_argument("--gap", type=int, default=5, help="memory gap (memory.update_every / DeAOT's gap)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    on_gpu = resolve_device(args.device).type == "cuda"
    if args.mode == "memory":
        args.frames = args.frames or (3000 if on_gpu else 300)
        args.every = args.every or max(1, args.frames // 10)
        run_memory(args)
    else:
        args.frames = args.frames or 30
        run_speed(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
