"""DINO appearance features of mask regions: the refiner's ``Verifier`` and the memory's embedding.

f(mask) = masked average of the ViT's patch tokens over a square crop around the mask's box,
L2-normalised (docs/method.md §2.3, eq. 4). All masks of a call go through the ViT as one batch.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .device import Runtime, crop_resize
from .types import Frame, mask_box
from .weights import WeightsError, fetch_hint, fitting_variants, load_into, read_state_dict, variant_hint

DINO_MODELS = ("vit_small_patch16_224.dino", "vit_base_patch16_224.dino",
               "vit_small_patch14_dinov2.lvd142m", "vit_base_patch14_dinov2.lvd142m")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _random_dino(name: str) -> torch.nn.Module:
    import timm

    if name not in DINO_MODELS:
        raise ValueError(f"dino model must be one of {', '.join(DINO_MODELS)}, got {name!r}")
    return timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True)


def _variants() -> dict:
    return {n: partial(_random_dino, n) for n in DINO_MODELS}


def build_dino(name: str, weights: Path | None) -> torch.nn.Module:
    """The timm ViT ``name`` without its head; weights from the official backbone file ``weights`` (never
    the network), converted as timm's own loader does; random when ``weights`` is None."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = _random_dino(name)
    if weights is not None:
        state = read_state_dict(name, weights)
        patch = state.get("patch_embed.proj.weight")
        if patch is not None and patch.shape[-2:] != model.patch_embed.proj.weight.shape[-2:]:
            # timm's filter would resample the patch kernel and load another model's weights into this one
            fits = fitting_variants(state, _variants())
            told = variant_hint("dino", fits) if fits else "not a DINO / DINOv2 backbone file"
            raise WeightsError(f"weights file {weights} does not fit model {name} (patch size {patch.shape[-1]}, "
                               f"model {model.patch_embed.patch_size[0]}); {told}; {fetch_hint(name, weights)}")
        try:
            state = checkpoint_filter_fn(state, model)  # DINOv2: drops mask_token; resamples pos_embed if needed
        except Exception as exc:
            raise WeightsError(f"weights file {weights} does not fit model {name} ({type(exc).__name__}: {exc}); "
                               f"{fetch_hint(name, weights)}") from exc
        load_into(model, state, name, weights, variants=_variants())
    return model.eval().requires_grad_(False)


class DinoVerifier:
    """``Verifier`` (refine.py) on a timm DINO / DINOv2 ViT."""

    def __init__(self, model: torch.nn.Module, runtime: Runtime, crop: int = 224, context: float = 0.25):
        self.model = model.to(runtime.device)
        self.runtime = runtime
        self.patch = int(model.patch_embed.patch_size[0])
        self.crop = max(self.patch, crop // self.patch * self.patch)
        self.context = context
        self.dim = int(model.num_features)
        self._mean = torch.tensor(IMAGENET_MEAN, device=runtime.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD, device=runtime.device).view(1, 3, 1, 1) * 255

    def crop_boxes(self, masks: list[np.ndarray], shape: tuple[int, int]) -> torch.Tensor:
        """A square box per mask: its tight box grown by ``context`` per side (the whole image if empty)."""
        h, w = shape
        boxes = []
        for m in masks:
            x0, y0, x1, y1 = mask_box(m) or (0, 0, w, h)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            half = max(x1 - x0, y1 - y0) * (0.5 + self.context)
            boxes.append((cx - half, cy - half, cx + half, cy + half))
        return torch.tensor(boxes, dtype=torch.float32, device=self.runtime.device)

    @torch.inference_mode()
    def features(self, frame: Frame, masks: list[np.ndarray]) -> np.ndarray:
        if not masks:
            return np.zeros((0, self.dim), np.float32)
        with self.runtime.stage("dino"):
            return self._features(frame, masks)

    def _features(self, frame: Frame, masks: list[np.ndarray]) -> np.ndarray:
        image = self.runtime.upload(frame)
        boxes = self.crop_boxes(masks, frame.hw)
        crops = (crop_resize(image, boxes, self.crop) - self._mean) / self._std
        weights = crop_resize(self.runtime.masks_to_device(masks)[:, None], boxes, self.crop)
        weights = F.avg_pool2d(weights, self.patch).flatten(1)  # share of each patch inside the mask
        with self.runtime.autocast():
            tokens = self.model.forward_features(crops).float()
        patches = tokens[:, self.model.num_prefix_tokens:]
        mass = weights.sum(1, keepdim=True)
        pooled = (weights[:, :, None] * patches).sum(1) / mass.clamp_min(1e-6)
        pooled = torch.where(mass > 0, pooled, tokens[:, 0])  # a mask too thin for any patch: CLS token
        return F.normalize(pooled, dim=1).cpu().numpy()
