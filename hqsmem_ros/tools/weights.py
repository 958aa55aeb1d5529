"""Fetch the GPU pipeline's checkpoints, or write random-initialised stand-ins in the official formats.

    ros2 run hqsmem_ros weights                       # the default pipeline's three files
    ros2 run hqsmem_ros weights --models r50_deaotl vit_b --dir /data/weights
    ros2 run hqsmem_ros weights --list
    python -m hqsmem_ros.tools.weights --make-random --dir /tmp/w   # offline tests and smoke runs

Random files are written in each official layout (DeAOT with its optimizer and scaler states, DINOv2 with
its mask_token) and load through exactly the node's code path, but track nothing: they exist so the pipeline
can be built, timed and tested where the real weights cannot be downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..core.backends.hqsmem import build_deaot
from ..core.backends.hqsmem_config import HQSMemPipelineConfig
from ..core.dino import build_dino
from ..core.samhq import build_sam_hq
from ..core.weights import CHECKPOINTS, Checkpoint, WeightsError, default_dir, download

_DEFAULT = HQSMemPipelineConfig()
DEFAULT_MODELS = (_DEFAULT.model, _DEFAULT.sam_model, _DEFAULT.dino_model)


def _training_extras(model: torch.nn.Module) -> dict:
    """The optimizer and AMP scaler states aot-benchmark's ``save_network`` stores next to the weights (one
    zero-gradient AdamW step, so the optimizer state holds tensors as a trained file's does)."""
    params = [p.requires_grad_(True) for p in model.parameters()]
    optimizer = torch.optim.AdamW(params)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return {"optimizer": optimizer.state_dict(), "scaler": torch.amp.GradScaler("cpu").state_dict()}


def random_state(checkpoint: Checkpoint) -> dict:
    """A random-initialised model of ``checkpoint``'s kind, in the layout of its official file."""
    if checkpoint.kind == "deaot":
        model = build_deaot(checkpoint.model, None)
        return {"state_dict": model.state_dict(), **_training_extras(model)}
    if checkpoint.kind == "samhq":
        return build_sam_hq(checkpoint.model, None).state_dict()
    state = build_dino(checkpoint.model, None).state_dict()  # the backbone-only releases: no head
    if "dinov2" in checkpoint.model:  # DINOv2's ViT keeps its masked-modelling token; timm's has none
        state["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    return state


def write_random(checkpoint: Checkpoint, directory: Path, seed: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    target = directory / checkpoint.filename
    torch.save(random_state(checkpoint), target)
    return target


def ensure_random(directory: Path, models: tuple[str, ...] = DEFAULT_MODELS) -> Path:
    """``directory`` holding random checkpoints for ``models`` (written once; reused when present)."""
    for model in models:
        if not (directory / CHECKPOINTS[model].filename).is_file():
            write_random(CHECKPOINTS[model], directory)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=None, help=f"target folder (default {default_dir()})")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help=f"models to fetch, or 'all' (default: {' '.join(DEFAULT_MODELS)}); known: "
                             f"{', '.join(CHECKPOINTS)}")
    parser.add_argument("--force", action="store_true", help="replace files that are already there")
    parser.add_argument("--make-random", action="store_true",
                        help="write random-initialised checkpoints in the official formats instead of downloading")
    parser.add_argument("--list", action="store_true", help="list the known checkpoints and which are present")
    args = parser.parse_args(argv)
    directory = args.dir or default_dir()
    models = list(CHECKPOINTS) if args.models == ["all"] else args.models
    unknown = [m for m in models if m not in CHECKPOINTS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(CHECKPOINTS)}")

    if args.list:
        for c in CHECKPOINTS.values():
            path = directory / c.filename
            print(f"{c.model:34s} {c.kind:6s} {'present' if path.is_file() else 'missing':8s} {path}")
        return 0

    failed = []
    for model in models:
        checkpoint = CHECKPOINTS[model]
        target = directory / checkpoint.filename
        if target.is_file() and not args.force:
            print(f"{model}: {target} is already there (--force replaces it)")
            continue
        try:
            if args.make_random:
                print(f"{model}: wrote random weights to {write_random(checkpoint, directory)}")
            else:
                path = download(checkpoint, directory)
                print(f"{model}: {path}")
        except (OSError, WeightsError) as exc:
            failed.append(model)
            print(f"{model}: failed: {exc}; download {checkpoint.url} by hand to {target}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
