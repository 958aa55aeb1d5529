"""SAM-HQ box-prompted proposals: the refiner's ``Proposer`` (docs/method.md §2.2, eqs. 2-3).

Per frame the image encoder runs once; all objects' boxes go through the prompt encoder and the HQ
mask decoder as one batch. The decoder's ``forward`` keeps only one mask (best SAM mask + HQ
correction), so its ``predict_masks`` is called directly to get every candidate: the 3 SAM multimask
outputs and the HQ mask, best first by predicted IoU (the HQ mask refines the best SAM mask, so it
takes that mask's score and comes first). A box-only target's first mask on the GPU pipeline is the first
candidate for its box (``box_init.BoxPromptInit``).
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .device import Runtime
from .types import Box, Frame
from .weights import WeightsError, fetch_hint, load_into, read_state_dict

SAM_MODELS = ("vit_tiny", "vit_b", "vit_l", "vit_h")
# Light HQ-SAM's TinyViT keeps an ImageNet classifier head that SAM never runs: files may or may not hold it.
TINYVIT_HEAD = ("image_encoder.head.", "image_encoder.norm_head.")


def _random_sam_hq(name: str) -> torch.nn.Module:
    with warnings.catch_warnings():  # it re-registers timm's tiny_vit models under the same names
        warnings.simplefilter("ignore")
        from segment_anything_hq import sam_model_registry

    if name not in SAM_MODELS:
        raise ValueError(f"sam model must be one of {', '.join(SAM_MODELS)}, got {name!r}")
    return sam_model_registry[name]()


def _tinyvit_head(key: str) -> bool:
    return key.startswith(TINYVIT_HEAD)


def build_sam_hq(name: str, weights: Path | None) -> torch.nn.Module:
    """The SAM-HQ model ``name`` on the CPU; its state dict read here onto the CPU (the package's own loader
    passes no map_location, so a GPU-saved file fails on a CPU machine). Random when ``weights`` is None."""
    model = _random_sam_hq(name)
    if weights is not None:
        state = read_state_dict(name, weights)
        if "mask_decoder.iou_token.weight" in state and "mask_decoder.hf_token.weight" not in state:
            raise WeightsError(f"weights file {weights} is a SAM checkpoint without SAM-HQ's HQ output token and "
                               f"feature fusion (mask_decoder.hf_*); {fetch_hint(name, weights)}")
        load_into(model, state, name, weights, ignore=_tinyvit_head,
                  variants={n: partial(_random_sam_hq, n) for n in SAM_MODELS})
    return model.eval().requires_grad_(False)


class SamHQProposer:
    """``Proposer`` (refine.py) on segment-anything-hq."""

    def __init__(self, model: torch.nn.Module, runtime: Runtime):
        from segment_anything_hq.utils.transforms import ResizeLongestSide

        self.model = model.to(runtime.device)
        self.runtime = runtime
        self.resize = ResizeLongestSide(model.image_encoder.img_size)
        self._index: int | None = None
        self._encoded = None

    @torch.inference_mode()
    def encode(self, frame: Frame) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """(image embedding, early ViT feature, resized input size) of the frame, computed once per frame
        index (the refiner and a box-only target's first mask share it)."""
        if frame.index != self._index:
            with self.runtime.stage("sam_encoder"):
                image = self.resize.apply_image_torch(self.runtime.upload(frame))
                with self.runtime.autocast():
                    features, interm = self.model.image_encoder(self.model.preprocess(image))
            self._index, self._encoded = frame.index, (features, interm[0], tuple(image.shape[-2:]))
        return self._encoded

    @torch.inference_mode()
    def decode(self, encoded, boxes: np.ndarray, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 4, H, W) bool candidate masks, HQ first then the SAM masks by predicted IoU, and their
        (N, 4) scores, for ``boxes`` (N, 4) in frame pixels."""
        with self.runtime.stage("sam_decoder"):
            return self._decode(encoded, boxes, shape)

    def _decode(self, encoded, boxes: np.ndarray, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        features, interm, input_size = encoded
        model, decoder = self.model, self.model.mask_decoder
        box_t = self.resize.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float32,
                                                              device=self.runtime.device), shape)
        with self.runtime.autocast():
            sparse, dense = model.prompt_encoder(points=None, boxes=box_t, masks=None)
            hq_features = decoder.embedding_encoder(features) + decoder.compress_vit_feat(interm.permute(0, 3, 1, 2))
            # masks: [single-mask SAM, 3 multimask SAM, HQ token]; iou: the first four.
            logits, iou = decoder.predict_masks(features, model.prompt_encoder.get_dense_pe(), sparse, dense,
                                                hq_features)
        logits, iou = logits.float(), iou.float()
        multi, multi_iou = logits[:, 1:4], iou[:, 1:4]
        order = multi_iou.argsort(dim=1, descending=True)
        multi = multi.gather(1, order[:, :, None, None].expand_as(multi))
        multi_iou = multi_iou.gather(1, order)
        hq = multi[:, :1] + logits[:, 4:5]  # what SAM-HQ itself outputs: best SAM mask + HQ correction
        candidates = torch.cat([hq, multi], dim=1)
        scores = torch.cat([multi_iou[:, :1], multi_iou], dim=1)
        masks = model.postprocess_masks(candidates, input_size, shape) > model.mask_threshold
        return masks, scores

    def propose(self, frame: Frame, boxes: dict[int, Box]) -> dict[int, list[np.ndarray]]:
        if not boxes:
            return {}
        ids = list(boxes)
        masks, _ = self.decode(self.encode(frame), np.array([boxes[i] for i in ids], np.float32), frame.hw)
        masks = masks.cpu().numpy()  # one device-to-host copy for every candidate of every object
        return {oid: [m for m in masks[i] if m.any()] for i, oid in enumerate(ids)}
