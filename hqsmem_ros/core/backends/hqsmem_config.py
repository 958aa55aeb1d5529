"""The hqsmem pipeline's settings (the ``hqsmem.*`` parameters), the checkpoint files they name, and
whether this machine can run the pipeline (what ``backend: auto`` asks). Needs no deaotpy, SAM-HQ or timm."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import param
from ..device import PRECISIONS
from ..dino import DINO_MODELS
from ..samhq import SAM_MODELS
from ..weights import FETCH_COMMAND, FETCH_MODULE, locate, missing

DEAOT_MODELS = ("deaott", "deaots", "deaotb", "deaotl", "r50_deaotl", "swinb_deaotl")
EMBEDDINGS = ("dino", "backbone")


@dataclass(frozen=True)
class HQSMemPipelineConfig:
    weights_dir: str = param("", "Folder holding the checkpoints under their official names (empty: "
                             "$HQSMEM_WEIGHTS, else ~/.cache/hqsmem_ros/weights)")
    device: str = param("auto", "auto (cuda when available), cpu, cuda or cuda:N")
    precision: str = param("fp16", "Autocast precision on GPU (the CPU always runs fp32)",
                           choices=tuple(PRECISIONS))
    model: str = param("deaott", "DeAOT variant (T/S/B/L with MobileNetV2, L with ResNet-50 or Swin-B)",
                       choices=DEAOT_MODELS)
    model_weights: str = param("", "DeAOT checkpoint path (empty: its official name in weights_dir)")
    max_short_edge: int = param(480, "DeAOT input: frames are scaled down to this short edge", min=64, max=2160)
    sam_hq: bool = param(True, "Load SAM-HQ + DINO and refine (steps 2-3); off: DeAOT + smart memory only")
    sam_model: str = param("vit_tiny", "SAM-HQ variant (vit_tiny = Light HQ-SAM)", choices=SAM_MODELS)
    sam_weights: str = param("", "SAM-HQ checkpoint path (empty: its official name in weights_dir)")
    dino_model: str = param(DINO_MODELS[0], "timm DINO / DINOv2 model of the verifier and the memory embedding",
                            choices=DINO_MODELS)
    dino_weights: str = param("", "DINO checkpoint path (empty: its official name in weights_dir)")
    dino_crop: int = param(224, "Side of the square crop DINO sees around each mask, in pixels", min=28, max=1022)
    dino_context: float = param(0.25, "Context around a mask's box in DINO's crop, as a fraction per side",
                                min=0.0, max=2.0)
    memory_embedding: str = param("dino", "Features pooled over each object's mask for memory relevance: dino, "
                                  "or backbone (DeAOT's encoder; needs no DINO when sam_hq is off)",
                                  choices=EMBEDDINGS)


def pipeline_weights(config: HQSMemPipelineConfig) -> dict[str, Path]:
    """The checkpoint files this configuration loads, by model."""
    paths = {config.model: locate(config.model, config.weights_dir, config.model_weights)}
    if config.sam_hq:
        paths[config.sam_model] = locate(config.sam_model, config.weights_dir, config.sam_weights)
    if config.sam_hq or config.memory_embedding == "dino":
        paths[config.dino_model] = locate(config.dino_model, config.weights_dir, config.dino_weights)
    return paths


def fetch_command(paths: dict[str, Path]) -> str:
    folder = next(iter(paths.values())).parent
    return (f"fetch them with `{FETCH_COMMAND} --models {' '.join(paths)} --dir {folder}` "
            f"(or `{FETCH_MODULE} ...` with the same arguments)")


def hqsmem_available(config: HQSMemPipelineConfig) -> tuple[bool, str]:
    """Whether ``backend: auto`` should take this pipeline, and why (or why not)."""
    if config.device == "cpu":
        return False, "hqsmem.device=cpu was requested"
    if not torch.cuda.is_available():
        return False, "no CUDA device (torch.cuda.is_available() is False)"
    paths = pipeline_weights(config)
    gone = missing(paths)
    if gone:
        return False, f"CUDA is available but weights are missing: {', '.join(gone)}; {fetch_command(paths)}"
    return True, f"CUDA device {torch.cuda.get_device_name()} and weights for {', '.join(paths)} found"
