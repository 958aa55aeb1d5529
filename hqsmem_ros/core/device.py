"""Device, precision and the one host-to-device copy of each frame, shared by the GPU pipeline's models."""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import numpy as np
import torch

from .types import Frame

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU; raises on an unusable name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} was requested but CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return device


class Runtime:
    """Where and how the models run: device, autocast on GPU (CPU stays fp32), the frame upload, and
    the hook around each model stage."""

    def __init__(self, device: torch.device, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device = device
        self.precision = precision
        self.dtype = PRECISIONS[precision] if device.type == "cuda" else None
        # Called with a stage's name (sam_encoder, sam_decoder, dino) around that stage; a benchmark
        # sets it to time the models without wrapping their methods.
        self.on_stage: Callable[[str], ContextManager] | None = None
        self._index: int | None = None
        self._tensor: torch.Tensor | None = None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def stage(self, name: str) -> ContextManager:
        return contextlib.nullcontext() if self.on_stage is None else self.on_stage(name)

    def upload(self, frame: Frame) -> torch.Tensor:
        """The frame as a (1, 3, H, W) float tensor in [0, 255] on the device, copied once per frame
        index: the backend and the refiner's models share the copy."""
        if frame.index != self._index:
            rgb = torch.from_numpy(np.ascontiguousarray(frame.pixels)).to(self.device)
            self._tensor = rgb.permute(2, 0, 1)[None].float()
            self._index = frame.index
        return self._tensor

    def masks_to_device(self, masks: list[np.ndarray]) -> torch.Tensor:
        """(N, H, W) float tensor of the masks, one copy for all of them."""
        stacked = torch.from_numpy(np.stack([np.asarray(m, dtype=bool) for m in masks]))
        return stacked.to(self.device, non_blocking=True).float()


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear crops of ``images`` (1 or N, C, H, W) at ``boxes`` (N, 4; x0, y0, x1, y1 in pixel-edge
    coordinates, may extend past the image: zeros there), each resized to size x size. Pure torch
    (grid_sample), so it runs wherever torch does."""
    n = boxes.shape[0]
    h, w = images.shape[-2:]
    steps = (torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5) / size
    x0, y0, x1, y1 = boxes.float().unbind(1)
    xs = x0[:, None] + steps[None] * (x1 - x0)[:, None]  # sample centres, in pixels
    ys = y0[:, None] + steps[None] * (y1 - y0)[:, None]
    gx = (2 * xs / w - 1)[:, None, :].expand(n, size, size)
    gy = (2 * ys / h - 1)[:, :, None].expand(n, size, size)
    grid = torch.stack([gx, gy], dim=-1)
    if images.shape[0] == 1 and n > 1:
        images = images.expand(n, -1, -1, -1)
    return torch.nn.functional.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros",
                                           align_corners=False)
