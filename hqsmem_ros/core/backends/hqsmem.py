"""The hqsmem pipeline's base model: DeAOT (deaotpy) whose long-term memory SmartMemory runs
(``hqsmem_engine``), and the pipeline's pieces built from the ``hqsmem.*`` settings: this backend, and
SAM-HQ proposals verified by DINO (docs/method.md §2, §4.1). The factory puts them into the tracker.

Objects: each engine holds up to ``MODEL_MAX_OBJ_NUM`` (10) identities ("slots"); more objects open
further engines sharing the frame's encoder features, merged like ``AOTInferEngine`` does. An object
joins mid-stream the way aot's evaluator adds new ids: its engine re-runs ``add_reference_frame`` on the
frame with the merged label (existing objects' accepted masks + the new mask), which also becomes that
engine's pinned reference entry. That happens in ``accept``, once the frame's accepted masks are known.
A removed object's identity is erased from every entry (its pixels re-labelled background, ID_V re-fused
from the stored pre-fusion ID branch), so a later object can take the slot. That is exact for a one-layer
model (DeAOT-T); in deeper ones the ID branch entering layers >= 2 was computed with the identity present
and keeps that trace.
"""

from __future__ import annotations

import contextlib
import io
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..device import Runtime, resolve_device
from ..dino import DinoVerifier, IMAGENET_MEAN, IMAGENET_STD, build_dino
from ..refine import RefinerConfig, VerifiedRefiner
from ..samhq import SamHQProposer, build_sam_hq
from ..types import Frame, Prediction
from ..weights import WeightsError, load_into, missing, read_state_dict
from .hqsmem_config import DEAOT_MODELS, HQSMemPipelineConfig, fetch_command, pipeline_weights


# -- models -------------------------------------------------------------------------------------------
def deaot_config(name: str):
    from aot.configs.default import DefaultEngineConfig

    if name not in DEAOT_MODELS:
        raise ValueError(f"model must be one of {', '.join(DEAOT_MODELS)}, got {name!r}")
    return DefaultEngineConfig("hqsmem", name)


def _random_deaot(name: str) -> torch.nn.Module:
    from aot.networks.models import build_vos_model

    cfg = deaot_config(name)
    with contextlib.redirect_stdout(io.StringIO()):  # aot prints that its optional compiled op is absent
        return build_vos_model(cfg.MODEL_VOS, cfg)


def build_deaot(name: str, weights: Path | None) -> torch.nn.Module:
    """DeAOT variant ``name`` on the CPU with a model-zoo checkpoint (random when ``weights`` is None)."""
    model = _random_deaot(name)
    if weights is not None:
        load_into(model, read_state_dict(name, weights), name, weights,
                  variants={n: partial(_random_deaot, n) for n in DEAOT_MODELS})
    return model.eval().requires_grad_(False)


def deaot_input_size(h: int, w: int, max_short_edge: int, align_corners: bool) -> tuple[int, int]:
    """The evaluator's resize: short edge capped, then each side snapped to the stride (16k+1 when the
    model aligns corners, else 16k)."""
    scale = min(1.0, max_short_edge / min(h, w))

    def snap(n: float) -> int:
        if align_corners:
            return max(17, int(round((n - 1) / 16)) * 16 + 1)
        return max(16, int(round(n / 16)) * 16)

    return snap(h * scale), snap(w * scale)


# -- the backend ------------------------------------------------------------------------------------------
class HQSMemBackend:
    """``Backend`` (backends/base.py) on DeAOT engines with keyed long-term memory."""

    name = "hqsmem"

    def __init__(self, model: torch.nn.Module, runtime: Runtime, max_short_edge: int = 480,
                 embedder: DinoVerifier | None = None):
        self.model = model.to(runtime.device)
        self.runtime = runtime
        self.device = str(runtime.device)
        self.max_short_edge = max_short_edge
        self.embedder = embedder  # None: memory embeddings from DeAOT's own encoder features
        from .hqsmem_engine import KeyedMemoryEngine  # deaotpy: only once a backend is built
        self.engine_class = KeyedMemoryEngine
        self.max_per_engine = model.max_obj_num
        self.engines: list = []
        self.where: dict[int, tuple[object, int]] = {}  # object id -> (engine, slot)
        self.joins: dict[object, int] = {}  # engine -> key of the reference frame it takes at accept
        self._frame: Frame | None = None  # the frame of the last step / add_object
        self._image: torch.Tensor | None = None  # the frame as DeAOT's normalised input
        self._embs: list[torch.Tensor] | None = None  # its encoder features, shared by every engine
        self._mean = torch.tensor(IMAGENET_MEAN, device=runtime.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD, device=runtime.device).view(1, 3, 1, 1) * 255

    # -- per-frame input ------------------------------------------------------------------------------
    def input_image(self, frame: Frame) -> torch.Tensor:
        """The frame as DeAOT's normalised input, resized as aot's evaluator does."""
        h, w = frame.hw
        image = self.runtime.upload(frame)
        size = deaot_input_size(h, w, self.max_short_edge, self.model.cfg.MODEL_ALIGN_CORNERS)
        if size != (h, w):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        return (image - self._mean) / self._std

    def _prepare(self, frame: Frame) -> None:
        if self._frame is not None and self._frame.index == frame.index:
            return
        image = self.input_image(frame)
        tracked = [tuple(e.input_size_2d) for e in self.engines if e.input_size_2d is not None]
        if tracked and tracked[0] != tuple(image.shape[-2:]):
            raise ValueError(f"frame size changed to {frame.hw[1]}x{frame.hw[0]} while objects are tracked at "
                             "another size; reset the tracker first")
        self._image, self._frame, self._embs = image, frame, None
        for engine in self.engines:
            engine.candidate = None

    def _features(self) -> list[torch.Tensor]:
        if self._embs is None:
            with self.runtime.autocast():
                self._embs = self.model.encode_image(self._image)
        return self._embs

    def _labels(self, masks: dict[int, np.ndarray]) -> dict[object, torch.Tensor]:
        """Per engine, the (1, 1, h, w) label map of the given masks at DeAOT's input size."""
        size = self._image.shape[-2:]
        labels = {e: torch.zeros((1, 1, *size), device=self.runtime.device) for e in self.engines}
        ids = [oid for oid in self.where if oid in masks and masks[oid].any()]
        if ids:
            small = F.interpolate(self.runtime.masks_to_device([masks[i] for i in ids])[:, None], size=size,
                                  mode="nearest")[:, 0] > 0.5
            for oid, m in sorted(zip(ids, small), key=lambda p: self.where[p[0]][1]):
                engine, slot = self.where[oid]
                labels[engine][0, 0][m] = slot
        return labels

    # -- Backend -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def add_object(self, obj_id: int, frame: Frame, mask: np.ndarray, key: int) -> None:
        self._prepare(frame)
        if obj_id in self.where:
            self.remove_object(obj_id)
        engine = next((e for e in self.engines if len(e.slots) < self.max_per_engine), None)
        if engine is None:
            engine = self.engine_class(self.model)
            self.engines.append(engine)
        slot = min(set(range(1, self.max_per_engine + 1)) - set(engine.slots))
        engine.slots[slot] = obj_id
        self.where[obj_id] = (engine, slot)
        self.joins[engine] = key

    @torch.inference_mode()
    def remove_object(self, obj_id: int) -> None:
        engine, slot = self.where.pop(obj_id)
        if len(engine.slots) == 1:
            self.engines.remove(engine)
            self.joins.pop(engine, None)
            return
        with self.runtime.autocast():
            engine.forget_slot(slot)

    @torch.inference_mode()
    def step(self, frame: Frame) -> dict[int, Prediction]:
        self._prepare(frame)
        if not self.engines:
            return {}
        size = frame.hw
        probs = []
        with self.runtime.autocast():
            for engine in self.engines:
                engine.match_propogate_one_frame(self._image, img_embs=self._embs)
                self._embs = engine.curr_enc_embs
                logits = engine.decode_current_logits(size).float()
                free = [s for s in range(1, self.max_per_engine + 1) if s not in engine.slots]
                logits[:, free] = -1e4  # removed identities may linger in short-term memory for a frame
                probs.append(torch.softmax(logits, dim=1))
        # Several engines: background = product of their background probabilities (AOTInferEngine's soft
        # aggregation), objects = each engine's own channels.
        background = torch.stack([p[:, 0] for p in probs]).prod(0)
        merged = torch.cat([background[:, None]] + [p[:, 1:] for p in probs], dim=1)[0]
        label = merged.argmax(0)
        channel = {oid: 1 + self.engines.index(e) * self.max_per_engine + s - 1 for oid, (e, s) in self.where.items()}
        ids = list(channel)
        index = torch.tensor([channel[i] for i in ids], device=label.device)
        masks = label[None] == index[:, None, None]
        area = masks.sum((1, 2))
        confidence = (merged[index] * masks).sum((1, 2)) / area.clamp_min(1)
        masks, confidence = masks.cpu().numpy(), confidence.cpu().numpy()
        return {oid: Prediction(masks[i], float(confidence[i])) for i, oid in enumerate(ids)}

    @torch.inference_mode()
    def accept(self, masks: dict[int, np.ndarray]) -> None:
        if not self.engines:
            return
        labels = self._labels(masks)
        with self.runtime.autocast():
            for engine in self.engines:
                if engine in self.joins:
                    engine.add_reference_frame(self._image, labels[engine], obj_nums=[max(engine.slots)],
                                               img_embs=self._features())
                    engine.store(self.joins[engine])
                else:
                    engine.update_short_term_memory(labels[engine])
        self.joins.clear()

    @torch.inference_mode()
    def embed(self, masks: dict[int, np.ndarray]) -> np.ndarray:
        regions = list(masks.values()) or [np.ones(self._frame.hw, bool)]  # global when no object
        if self.embedder is not None:
            feats = torch.from_numpy(self.embedder.features(self._frame, regions))
        else:
            feats = self._backbone_features(regions)
        mean = F.normalize(feats.float(), dim=1).mean(0)
        return F.normalize(mean, dim=0).numpy()

    def _backbone_features(self, regions: list[np.ndarray]) -> torch.Tensor:
        features = self._features()[-1].float()  # (1, C, h, w): DeAOT's projected stride-16 features
        weights = F.adaptive_avg_pool2d(self.runtime.masks_to_device(regions)[:, None], features.shape[-2:])
        pooled = (weights * features).sum((2, 3)) / weights.sum((2, 3)).clamp_min(1e-6)
        return pooled.cpu()

    @torch.inference_mode()
    def write_memory(self, key: int) -> None:
        for engine in self.engines:
            engine.store(key)

    @torch.inference_mode()
    def evict_memory(self, key: int) -> None:
        for engine in self.engines:
            engine.drop(key)

    def memory_keys(self) -> list[int]:
        return sorted({k for e in self.engines for k in e.entries})

    def memory_bytes(self) -> int:
        return sum(e.memory_bytes() for e in self.engines)

    def reset(self) -> None:
        self.engines, self.where, self.joins = [], {}, {}
        self._frame = self._image = self._embs = None


# -- the pipeline ------------------------------------------------------------------------------------------
def build_pipeline(config: HQSMemPipelineConfig,
                   refiner: RefinerConfig) -> tuple[HQSMemBackend, VerifiedRefiner | None]:
    """The backend (DeAOT + smart memory) and, when ``sam_hq``, the refiner (SAM-HQ proposals verified by
    DINO), loaded from the configured checkpoints; a missing or unusable file raises ``WeightsError``
    saying how to fetch it."""
    runtime = Runtime(resolve_device(config.device), config.precision)
    paths = pipeline_weights(config)
    gone = missing(paths)
    if gone:  # all of them at once, before minutes of loading
        raise WeightsError(f"weights missing: {', '.join(gone)}; {fetch_command(paths)}")
    dino = None
    if config.dino_model in paths:
        dino = DinoVerifier(build_dino(config.dino_model, paths[config.dino_model]), runtime,
                            config.dino_crop, config.dino_context)
    backend = HQSMemBackend(build_deaot(config.model, paths[config.model]), runtime,
                            config.max_short_edge, dino if config.memory_embedding == "dino" else None)
    if not config.sam_hq:
        return backend, None
    proposer = SamHQProposer(build_sam_hq(config.sam_model, paths[config.sam_model]), runtime)
    return backend, VerifiedRefiner(proposer, dino, refiner)
